package github

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

func TestClient_RedeliverFailed(t *testing.T) {
	e := newEnv(t)
	newAppFake(t, e)
	at := func(min int) string { return t0.Add(-time.Duration(min) * time.Minute).Format(time.RFC3339) }
	item := func(id int64, guid, event string, ago int) map[string]any {
		return map[string]any{"id": id, "guid": guid, "event": event, "action": "queued", "status": "Invalid HTTP Response: 503",
			"status_code": 503, "delivered_at": at(ago), "redelivery": false, "installation_id": 11}
	}
	e.f.on("GET /app/hook/deliveries", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("status") != "failure" {
			writeJSON(w, 400, map[string]any{"message": "want status=failure"})
			return
		}
		if r.URL.Query().Get("cursor") == "" {
			w.Header().Set("Link", "<"+e.f.srv.URL+`/app/hook/deliveries?status=failure&per_page=100&cursor=c2>; rel="next"`)
			writeJSON(w, 200, []any{item(105, "g5", "workflow_job", 1), item(104, "g4", "ping", 2), item(103, "g3", "workflow_job", 3)})
			return
		}
		writeJSON(w, 200, []any{item(102, "g3", "workflow_job", 4), item(101, "g2", "workflow_job", 5), item(100, "g1", "workflow_job", 90)})
	})
	var redelivered []string
	for id := int64(100); id <= 105; id++ {
		e.f.on(fmt.Sprintf("POST /app/hook/deliveries/%d/attempts", id), func(w http.ResponseWriter, r *http.Request) {
			redelivered = append(redelivered, fmt.Sprint(id))
			writeJSON(w, 202, map[string]any{})
		})
	}
	c1 := e.client(t, e.appTarget(t, corral.ScopeRepo, "o/r"))
	c2 := e.client(t, e.appTarget(t, corral.ScopeOrg, "o"))
	n, err := c1.RedeliverFailed(ctxT(t), t0.Add(-time.Hour))
	if err != nil || n != 3 {
		t.Fatalf("n = %d, err = %v", n, err)
	}
	// Newest failure of each workflow_job guid, within the window, once.
	if !slices.Equal(redelivered, []string{"105", "103", "101"}) {
		t.Fatalf("redelivered %v", redelivered)
	}
	// Another target of the same App shares the record.
	n, err = c2.RedeliverFailed(ctxT(t), t0.Add(-time.Hour))
	if err != nil || n != 0 {
		t.Fatalf("second call: n = %d, err = %v", n, err)
	}
	if h := e.f.last("GET /app/hook/deliveries"); h.Auth == "" || h.Auth[:9] != "Bearer ey" {
		t.Fatal("deliveries not listed with the App JWT")
	}
	if tok := e.client(t, e.target(corral.ScopeRepo, "o/r")); tok.CanListDeliveries() || !c1.CanListDeliveries() {
		t.Error("CanListDeliveries: want true for the App client only")
	}
	if _, err := e.client(t, e.target(corral.ScopeRepo, "o/r")).RedeliverFailed(ctxT(t), t0); !errors.Is(err, corral.ErrBadInput) {
		t.Fatalf("PAT target: %v", err)
	}
}
