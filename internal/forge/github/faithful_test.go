package github_test

// corral's GitHub client against the parts of GitHub the stand-in imitates
// faithfully since issue 18 item 7: full repository objects (archived,
// disabled), X-GitHub-Api-Version, re-runs, capped run listings and
// secondary rate limits without Retry-After.

import (
	"slices"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github/standin"
)

func openIDs(evs []corral.JobEvent) []int64 {
	var ids []int64
	for _, ev := range evs {
		ids = append(ids, ev.ForgeJobID)
	}
	slices.Sort(ids)
	return ids
}

func TestStandin_OrgSweepSkipsArchivedAndDisabled(t *testing.T) {
	ctx := deadline(t, 30*time.Second)
	s, url := startStandin(t, standin.Options{})
	s.AddRepo("acme", "old")
	s.AddRepo("acme", "locked")
	live := s.QueueJob("acme/app", standin.JobSpec{Name: "live", Labels: []string{"linux"}, Duration: time.Minute})
	s.QueueJob("acme/old", standin.JobSpec{Name: "archived", Labels: []string{"linux"}, Duration: time.Minute})
	s.QueueJob("acme/locked", standin.JobSpec{Name: "disabled", Labels: []string{"linux"}, Duration: time.Minute})
	s.SetRepoState("acme/old", true, false)
	s.SetRepoState("acme/locked", false, true)
	c := newClient(t, tgt(url, corral.ScopeOrg, "acme"), nil)
	open, err := c.OpenJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := openIDs(open); !slices.Equal(got, []int64{live}) {
		t.Fatalf("open jobs %v, want only %d of the live repository: %+v", got, live, open)
	}
	if n := s.Stats().Calls["GET runs"]; n != 3 {
		t.Fatalf("%d run listings, want 3 (one repository, three open statuses)", n)
	}
}
