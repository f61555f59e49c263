package gitea

import (
	"testing"

	"github.com/corral-ci/corral/internal/corral"
)

// Every API path the client calls (below /api/v1) falls in its endpoint
// class; anything else is "other".
func TestEndpointClass(t *testing.T) {
	for path, want := range map[string]string{
		"/repos/o/r/actions/runners/registration-token": corral.CallRegistration,
		"/admin/actions/runners/registration-token":     corral.CallRegistration,
		"/orgs/o/actions/runners":                       corral.CallRunners,
		"/user/actions/runners/12":                      corral.CallRunners,
		"/repos/o/r/actions/runners/jobs":               corral.CallJobs,
		"/repos/o/r/actions/jobs/3":                     corral.CallJobs,
		"/repos/o/r/actions/runs":                       corral.CallJobs,
		"/repos/o/r/hooks":                              corral.CallHooks,
		"/orgs/o/repos":                                 corral.CallRepos,
		"/version":                                      corral.CallMeta,
		"/user":                                         corral.CallOther,
	} {
		if got := endpointClass(path); got != want {
			t.Errorf("endpointClass(%q) = %q, want %q", path, got, want)
		}
	}
}
