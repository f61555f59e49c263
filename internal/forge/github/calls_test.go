package github

import (
	"testing"

	"github.com/corral-ci/corral/internal/corral"
)

// Every REST path the client calls falls in its endpoint class, under a
// GHES prefix too; anything else is "other".
func TestEndpointClass(t *testing.T) {
	for path, want := range map[string]string{
		"/repos/o/r/actions/runners/generate-jitconfig":     corral.CallJIT,
		"/api/v3/orgs/o/actions/runners/generate-jitconfig": corral.CallJIT,
		"/orgs/o/actions/runners/registration-token":        corral.CallRegistration,
		"/enterprises/e/actions/runners/remove-token":       corral.CallRegistration,
		"/repos/o/r/actions/runners":                        corral.CallRunners,
		"/orgs/o/actions/runners/42":                        corral.CallRunners,
		"/orgs/o/actions/runner-groups":                     corral.CallRunners,
		"/repos/o/r/actions/runs":                           corral.CallJobs,
		"/repos/o/r/actions/runs/7/jobs":                    corral.CallJobs,
		"/repos/o/r/actions/jobs/9":                         corral.CallJobs,
		"/app/installations/5/access_tokens":                corral.CallToken,
		"/repos/o/r/installation":                           corral.CallToken,
		"/app":                                              corral.CallToken,
		"/app/installations":                                corral.CallToken,
		"/app/hook/deliveries":                              corral.CallHooks,
		"/repos/o/r/hooks/3/deliveries/4/attempts":          corral.CallHooks,
		"/installation/repositories":                        corral.CallRepos,
		"/orgs/o/repos":                                     corral.CallRepos,
		"/rate_limit":                                       corral.CallMeta,
		"/api/v3/meta":                                      corral.CallMeta,
		"/user":                                             corral.CallOther,
	} {
		if got := endpointClass(path); got != want {
			t.Errorf("endpointClass(%q) = %q, want %q", path, got, want)
		}
	}
}
