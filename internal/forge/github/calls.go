package github

import (
	"strings"

	"github.com/corral-ci/corral/internal/corral"
)

// endpointClass sorts a GitHub REST path into one of corral's fixed
// endpoint classes (metrics).
func endpointClass(path string) string {
	p := strings.TrimSuffix(path, "/")
	has := func(s string) bool { return strings.Contains(p, s) }
	switch {
	case has("/actions/runners/generate-jitconfig"):
		return corral.CallJIT
	case has("/actions/runners/registration-token"), has("/actions/runners/remove-token"):
		return corral.CallRegistration
	case has("/actions/runners"), has("/actions/runner-groups"):
		return corral.CallRunners
	case has("/actions/runs"), has("/actions/jobs"):
		return corral.CallJobs
	case has("/hooks"), has("/app/hook/"):
		return corral.CallHooks
	case has("/access_tokens"), strings.HasSuffix(p, "/installation"), strings.HasSuffix(p, "/app"),
		strings.HasSuffix(p, "/app/installations"):
		return corral.CallToken
	case strings.HasSuffix(p, "/installation/repositories"), strings.HasSuffix(p, "/repos"):
		return corral.CallRepos
	case strings.HasSuffix(p, "/rate_limit"), strings.HasSuffix(p, "/meta"):
		return corral.CallMeta
	}
	return corral.CallOther
}

// recordCall tells the recorder about one request sent (status 0: no
// answer).
func (c *Client) recordCall(path string, status int, limited bool) {
	if c.opt.Recorder == nil {
		return
	}
	c.opt.Recorder.ForgeCall(c.t.ID, endpointClass(path), corral.CallResult(status, limited))
}
