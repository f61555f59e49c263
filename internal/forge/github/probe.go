package github

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	gh "github.com/google/go-github/v75/github"

	"github.com/corral-ci/corral/internal/corral"
)

// ProbeResult is what the probe learned about the forge and the target.
type ProbeResult struct {
	// Server is true on GitHub Enterprise Server.
	Server bool
	// Version is the GHES release ("3.9.4"); "" on github.com and GHEC.
	Version string
	// JIT is true when generate-jitconfig exists (github.com, GHEC,
	// GHES >= 3.10).
	JIT bool
}

// MinJITServerVersion is the first GHES release with JIT runners.
const MinJITServerVersion = "3.10"

// Probe learns the forge's kind and version (GET /meta: installed_version
// or the X-GitHub-Enterprise-Version header), whether it has JIT runners,
// and checks the credential on the target's runner list (one page of one).
// A refused credential gives ErrUnauthorized with what to check; a missing
// target ErrNotFound. Its result is kept; MintRunner, Runners and OpenJobs
// probe once at first use.
func (c *Client) Probe(ctx context.Context) (ProbeResult, error) {
	var res ProbeResult
	req, err := c.gh.NewRequest("GET", "meta", nil)
	if err != nil {
		return res, err
	}
	var meta struct {
		InstalledVersion string `json:"installed_version"`
	}
	resp, err := c.gh.Do(ctx, req, &meta)
	if err != nil {
		return res, c.callErr("probe meta", resp, err)
	}
	res.Version = strings.TrimSpace(meta.InstalledVersion)
	if v := strings.TrimSpace(resp.Header.Get("X-GitHub-Enterprise-Version")); v != "" && res.Version == "" {
		res.Version = v
	}
	res.Server = res.Version != ""
	res.JIT = !res.Server || versionAtLeast(res.Version, MinJITServerVersion)

	// The credential and its permission, on the call the sweeps make.
	opt := &gh.ListRunnersOptions{ListOptions: gh.ListOptions{PerPage: 1}}
	switch c.t.Scope {
	case corral.ScopeRepo:
		_, resp, err = c.gh.Actions.ListRunners(ctx, c.owner, c.repo, opt)
	case corral.ScopeOrg:
		_, resp, err = c.gh.Actions.ListOrganizationRunners(ctx, c.owner, opt)
	default:
		_, resp, err = c.gh.Enterprise.ListRunners(ctx, c.owner, opt)
	}
	if err != nil {
		err = c.callErr("probe runners", resp, err)
		switch {
		case errors.Is(err, corral.ErrUnauthorized):
			return res, fmt.Errorf("%w (%s)", err, c.permissionHint())
		case errors.Is(err, corral.ErrNotFound):
			return res, fmt.Errorf("%w (the %s %q does not exist or the credential cannot see it)", err, c.t.Scope, c.t.Path)
		}
		return res, err
	}
	c.probeMu.Lock()
	c.probed = &res
	c.probeMu.Unlock()
	return res, nil
}

func (c *Client) permissionHint() string {
	switch {
	case c.app != nil && c.t.Scope == corral.ScopeRepo:
		return "the App needs repository permission Administration: write, and to be installed on the repository"
	case c.app != nil:
		return "the App needs organization permission Self-hosted runners: write, and to be installed on the organization"
	case c.t.Scope == corral.ScopeRepo:
		return "a classic PAT needs scope repo; a fine-grained one Administration: write on the repository"
	case c.t.Scope == corral.ScopeOrg:
		return "a classic PAT needs scope admin:org; a fine-grained one organization Self-hosted runners: write"
	}
	return "enterprise runners need a classic PAT with manage_runners:enterprise"
}

// ensureProbe probes once. Refused credentials and missing targets stop
// the caller; a forge that does not answer is probed again next time while
// the caller goes on (assuming JIT).
func (c *Client) ensureProbe(ctx context.Context) error {
	c.probeRun.Lock()
	defer c.probeRun.Unlock()
	c.probeMu.Lock()
	done := c.probed != nil
	c.probeMu.Unlock()
	if done {
		return nil
	}
	_, err := c.Probe(ctx)
	if err == nil || !(errors.Is(err, corral.ErrUnauthorized) || errors.Is(err, corral.ErrNotFound)) {
		if err != nil {
			c.log.Warn("probe failed; will try again", "err", err)
		}
		return nil
	}
	return err
}

// jit tells whether to mint JIT runners.
func (c *Client) jit() bool {
	c.probeMu.Lock()
	defer c.probeMu.Unlock()
	if c.noJIT {
		return false
	}
	return c.probed == nil || c.probed.JIT
}

// versionAtLeast compares dotted release numbers ("3.9.4" >= "3.10").
func versionAtLeast(v, min string) bool {
	a, b := strings.Split(v, "."), strings.Split(min, ".")
	for i := range b {
		if i >= len(a) {
			return false
		}
		x, err1 := strconv.Atoi(strings.TrimLeft(a[i], "v"))
		y, err2 := strconv.Atoi(b[i])
		if err1 != nil || err2 != nil {
			return true // unknown format: assume a current release
		}
		if x != y {
			return x > y
		}
	}
	return true
}

// RunnerDownload is one runner package GitHub offers.
type RunnerDownload struct {
	OS, Arch, URL, Filename, SHA256 string
	Version                         string // from the file name, e.g. "2.329.0"
}

var runnerFileVersion = regexp.MustCompile(`(\d+\.\d+\.\d+)\.(?:tar\.gz|zip)$`)

// RunnerDownloads lists the runner packages of the target's scope (GET
// …/actions/runners/downloads): the current release, which GitHub keeps
// accepting; images with an older runner risk ErrRunnerDeprecated.
func (c *Client) RunnerDownloads(ctx context.Context) ([]RunnerDownload, error) {
	ctx = withPriority(ctx, prioritySweep)
	var ds []*gh.RunnerApplicationDownload
	var resp *gh.Response
	var err error
	switch c.t.Scope {
	case corral.ScopeRepo:
		ds, resp, err = c.gh.Actions.ListRunnerApplicationDownloads(ctx, c.owner, c.repo)
	case corral.ScopeOrg:
		ds, resp, err = c.gh.Actions.ListOrganizationRunnerApplicationDownloads(ctx, c.owner)
	default:
		ds, resp, err = c.gh.Enterprise.ListRunnerApplicationDownloads(ctx, c.owner)
	}
	if err != nil {
		return nil, c.callErr("runner-downloads", resp, err)
	}
	out := make([]RunnerDownload, 0, len(ds))
	for _, d := range ds {
		rd := RunnerDownload{OS: d.GetOS(), Arch: d.GetArchitecture(), URL: d.GetDownloadURL(),
			Filename: d.GetFilename(), SHA256: d.GetSHA256Checksum()}
		if m := runnerFileVersion.FindStringSubmatch(rd.Filename); m != nil {
			rd.Version = m[1]
		}
		out = append(out, rd)
	}
	return out, nil
}

// MinMultiLabelScaleSetVersion is the first GHES release that keeps a
// runner scale set's labels beyond its name (older ones drop them
// silently, so jobs must say runs-on: <scale set name>).
const MinMultiLabelScaleSetVersion = "3.18"

// ScaleSetLabelsKept tells whether a forge of version (ProbeResult.Version,
// "" for github.com and GHEC) keeps a scale set's extra labels.
func ScaleSetLabelsKept(version string) bool {
	return version == "" || versionAtLeast(version, MinMultiLabelScaleSetVersion)
}
