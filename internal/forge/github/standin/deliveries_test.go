package standin

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

type deliveryItem struct {
	ID         int64  `json:"id"`
	GUID       string `json:"guid"`
	Redelivery bool   `json:"redelivery"`
	Status     string `json:"status"`
	StatusCode int    `json:"status_code"`
	Event      string `json:"event"`
	Action     string `json:"action"`
	Inst       *int64 `json:"installation_id"`
	RepoID     int64  `json:"repository_id"`
}

func listDeliveries(t *testing.T, url, auth string) []deliveryItem {
	t.Helper()
	a := do(t, "GET", url, auth, nil)
	want(t, a, http.StatusOK)
	var items []deliveryItem
	a.json(t, &items)
	return items
}

func TestServer_Deliveries(t *testing.T) {
	t.Run("failed delivery is listed and redelivered", func(t *testing.T) {
		s, base := newStandin(t, Options{})
		rc := newReceiver(t)
		rc.setStatus(http.StatusServiceUnavailable)
		hook := s.AddHook("acme/app", rc.url, testSecret)
		s.QueueJob("acme/app", JobSpec{Labels: []string{"x"}})
		u := fmt.Sprintf("%s/repos/acme/app/hooks/%d/deliveries", base, hook)
		var items []deliveryItem
		waitFor(t, 5*time.Second, "two failed deliveries", func() bool {
			items = listDeliveries(t, u+"?status=failure", token(adminPAT))
			return len(items) == 2
		})
		job := items[0] // newest first: workflow_job queued after workflow_run requested
		if job.Event != "workflow_job" || job.Action != "queued" || job.Status == "OK" || job.StatusCode != 503 || job.Redelivery || job.Inst != nil || job.RepoID == 0 {
			t.Fatalf("item %+v", job)
		}
		a := do(t, "GET", fmt.Sprintf("%s/%d", u, job.ID), token(adminPAT), nil)
		want(t, a, http.StatusOK)
		mustContain(t, string(a.body), `"X-GitHub-Delivery":"`+job.GUID)
		rc.setStatus(http.StatusAccepted)
		a = do(t, "POST", fmt.Sprintf("%s/%d/attempts", u, job.ID), token(adminPAT), nil)
		want(t, a, http.StatusAccepted)
		waitFor(t, 5*time.Second, "redelivery", func() bool {
			ok := listDeliveries(t, u+"?status=success", token(adminPAT))
			return len(ok) == 1 && ok[0].Redelivery && ok[0].GUID == job.GUID && ok[0].Status == "OK"
		})
		got := rc.all()
		if got[len(got)-1].header.Get("X-GitHub-Delivery") != job.GUID || got[len(got)-1].d.Job == nil {
			t.Fatal("the redelivery must carry the same GUID")
		}
		want(t, do(t, "POST", u+"/1/attempts", token(adminPAT), nil), http.StatusNotFound)
		want(t, do(t, "GET", fmt.Sprintf("%s/orgs/acme/hooks/%d/deliveries", base, hook), token(adminPAT), nil), http.StatusNotFound)
		if st := s.Stats().Webhooks; st.Failed != 2 || st.Sent != 1 || st.Redelivered != 1 {
			t.Fatalf("webhook stats %+v", st)
		}
	})
	t.Run("fault-failed deliveries are listed, not sent", func(t *testing.T) {
		ka, _ := testKeys(t)
		s, base := newStandin(t, Options{})
		rc := newReceiver(t)
		s.AddApp(appID, &ka.PublicKey, rc.url, testSecret)
		s.Install(appID, instID, "acme")
		s.SetFaults(Faults{FailDeliveryRate: 1})
		for range 3 {
			s.QueueJob("acme/app", JobSpec{Labels: []string{"x"}})
		}
		jwt := "Bearer " + signJWT(t, ka, appID, time.Now().Add(-time.Minute), time.Now().Add(5*time.Minute))
		// Cursor paging over the 6 deliveries, 4 per page.
		var all []deliveryItem
		next := base + "/api/v3/app/hook/deliveries?per_page=4"
		for pages := 0; next != ""; pages++ {
			if pages > 3 {
				t.Fatal("cursor paging does not end")
			}
			a := do(t, "GET", next, jwt, nil)
			want(t, a, http.StatusOK)
			var items []deliveryItem
			a.json(t, &items)
			all = append(all, items...)
			next = links(a.header)["next"]
		}
		if len(all) != 6 || len(rc.all()) != 0 {
			t.Fatalf("listed %d, sent %d", len(all), len(rc.all()))
		}
		for i, it := range all {
			if it.Status == "OK" || it.Inst == nil || *it.Inst != instID || (i > 0 && it.ID >= all[i-1].ID) {
				t.Fatalf("item %d %+v", i, it)
			}
		}
		s.SetFaults(Faults{})
		want(t, do(t, "POST", fmt.Sprintf("%s/app/hook/deliveries/%d/attempts", base, all[0].ID), jwt, nil), http.StatusAccepted)
		waitFor(t, 5*time.Second, "redelivery", func() bool { return len(rc.all()) == 1 })
		if st := s.Stats().Webhooks; st.FaultFailed != 6 {
			t.Fatalf("stats %+v", st)
		}
		want(t, do(t, "GET", base+"/app/hook/deliveries?cursor=bogus", jwt, nil), http.StatusBadRequest)
	})
	t.Run("drop and duplicate", func(t *testing.T) {
		s, base := newStandin(t, Options{})
		rc := newReceiver(t)
		hook := s.AddHook("acme", rc.url, testSecret)
		s.SetFaults(Faults{DropRate: 1})
		s.QueueJob("acme/app", JobSpec{Labels: []string{"x"}})
		s.SetFaults(Faults{DuplicateRate: 1})
		id := s.QueueJob("acme/app", JobSpec{Labels: []string{"x"}})
		waitFor(t, 5*time.Second, "duplicates", func() bool { return len(rc.all()) == 4 })
		evs := rc.jobEvents(id)
		if len(evs) != 2 {
			t.Fatalf("events %+v", evs)
		}
		got := rc.all()
		if got[2].header.Get("X-GitHub-Delivery") != got[3].header.Get("X-GitHub-Delivery") {
			t.Fatal("a duplicate has the same GUID")
		}
		if st := s.Stats().Webhooks; st.Dropped != 2 || st.Duplicated != 2 {
			t.Fatalf("stats %+v", st)
		}
		// The attempt is recorded once the receiver has answered.
		waitFor(t, 5*time.Second, "4 listed deliveries", func() bool {
			return len(listDeliveries(t, fmt.Sprintf("%s/orgs/acme/hooks/%d/deliveries", base, hook), token(adminPAT))) == 4
		})
	})
	t.Run("reorder", func(t *testing.T) {
		s, _ := newStandin(t, Options{})
		rc := newReceiver(t)
		s.AddHook("acme/app", rc.url, testSecret)
		s.SetFaults(Faults{ReorderRate: 1})
		s.QueueJob("acme/app", JobSpec{Labels: []string{"x"}})
		waitFor(t, 5*time.Second, "both events", func() bool { return len(rc.all()) == 2 })
		if got := rc.all(); got[0].d.Event != "workflow_job" || got[1].d.Event != "workflow_run" {
			t.Fatalf("workflow_run requested should arrive after workflow_job queued: %s, %s", got[0].d.Event, got[1].d.Event)
		}
		if s.Stats().Webhooks.Reordered != 1 {
			t.Fatalf("stats %+v", s.Stats().Webhooks)
		}
	})
}

func TestServer_ListHooks(t *testing.T) {
	s, base := newStandin(t, Options{})
	repoHook := s.AddHook("acme/app", "http://127.0.0.1:9/webhooks/r", testSecret)
	orgHook := s.AddHook("acme", "http://127.0.0.1:9/webhooks/o", testSecret)
	type item struct {
		ID     int64
		Type   string
		Active bool
		Events []string
		Config map[string]string
	}
	for _, c := range []struct {
		path string
		id   int64
		typ  string
		url  string
	}{{"/repos/acme/app/hooks", repoHook, "Repository", "http://127.0.0.1:9/webhooks/r"},
		{"/orgs/acme/hooks", orgHook, "Organization", "http://127.0.0.1:9/webhooks/o"}} {
		a := do(t, "GET", base+c.path, token(adminPAT), nil)
		want(t, a, http.StatusOK)
		var items []item
		a.json(t, &items)
		if len(items) != 1 || items[0].ID != c.id || items[0].Type != c.typ || !items[0].Active || items[0].Config["url"] != c.url {
			t.Fatalf("%s: %s", c.path, a.body)
		}
		if items[0].Config["secret"] != "********" || strings.Contains(string(a.body), testSecret.Reveal()) {
			t.Fatalf("%s: the secret must show as ******** only: %s", c.path, a.body)
		}
	}
	// A classic PAT without admin:org_hook is refused, like GitHub does.
	s.AddPAT("ghp_no_hook_scope", "repo", "admin:org")
	want(t, do(t, "GET", base+"/orgs/acme/hooks", token("ghp_no_hook_scope"), nil), http.StatusForbidden)
}

func TestServer_DateFollowsClock(t *testing.T) {
	ahead := 2 * time.Minute
	_, base := newStandin(t, Options{Now: func() time.Time { return time.Now().Add(ahead) }})
	before := time.Now()
	a := do(t, "GET", base+"/meta", "", nil)
	d, err := http.ParseTime(a.header.Get("Date"))
	if err != nil {
		t.Fatalf("Date %q: %v", a.header.Get("Date"), err)
	}
	if skew := d.Sub(before); skew < ahead-2*time.Second || skew > ahead+5*time.Second {
		t.Fatalf("Date is %s from the local clock, want about %s", skew, ahead)
	}
}
