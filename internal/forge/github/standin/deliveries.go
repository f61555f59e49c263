package standin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// hookOfLocked finds the hook of a deliveries call: the app's own hook
// (JWT) or a repository/organization hook by id within the path's scope.
func (s *Server) hookOfLocked(r *http.Request, c *call) *hook {
	if c.cred.kind == "app" {
		return c.cred.app.hook
	}
	h := s.hooks[pathID(r, "hook_id")]
	if h == nil {
		return nil
	}
	switch {
	case c.scope.kind == "repos" && h.kind == hookRepo && h.target == strings.ToLower(c.scope.name):
		return h
	case c.scope.kind == "orgs" && h.kind == hookOrg && h.target == strings.ToLower(c.scope.name):
		return h
	}
	return nil
}

func (d *deliveryRec) item() map[string]any {
	var inst any
	if d.installationID != 0 {
		inst = d.installationID
	}
	return map[string]any{
		"id": d.id, "guid": d.guid, "delivered_at": d.deliveredAt.Format(stamp), "redelivery": d.redelivery,
		"duration": d.duration, "status": d.status, "status_code": d.statusCode, "event": d.event,
		"action": d.action, "installation_id": inst, "repository_id": d.repositoryID, "throttled_at": nil,
	}
}

func (d *deliveryRec) ok() bool { return d.statusCode >= 200 && d.statusCode < 300 }

// handleListDeliveries lists a hook's deliveries, newest first, paged by
// an opaque cursor in the Link header (rel="next").
func (s *Server) handleListDeliveries(w http.ResponseWriter, r *http.Request, c *call) {
	q := r.URL.Query()
	status := q.Get("status")
	if status != "" && status != "success" && status != "failure" {
		s.respond(w, r, c, http.StatusUnprocessableEntity, errBody(http.StatusUnprocessableEntity,
			fmt.Sprintf("Invalid request.\n\n%q is not a member of the status enum.", status)))
		return
	}
	perPage := 30
	if n, err := strconv.Atoi(q.Get("per_page")); err == nil && n > 0 {
		perPage = min(n, 100)
	}
	before := int64(-1)
	if cur := q.Get("cursor"); cur != "" {
		n, err := strconv.ParseInt(strings.TrimPrefix(cur, "v1_"), 10, 64)
		if err != nil || !strings.HasPrefix(cur, "v1_") {
			s.respond(w, r, c, http.StatusBadRequest, errBody(http.StatusBadRequest, "Invalid cursor"))
			return
		}
		before = n
	}
	s.mu.Lock()
	h := s.hookOfLocked(r, c)
	if h == nil {
		s.mu.Unlock()
		s.respond(w, r, c, http.StatusNotFound, errBody(http.StatusNotFound, "Not Found"))
		return
	}
	out := []map[string]any{}
	var last int64
	more := false
	for i := len(h.deliveries) - 1; i >= 0; i-- {
		d := h.deliveries[i]
		if (before >= 0 && d.id >= before) || (status == "success" && !d.ok()) || (status == "failure" && d.ok()) {
			continue
		}
		if len(out) == perPage {
			more = true
			break
		}
		out = append(out, d.item())
		last = d.id
	}
	s.mu.Unlock()
	if more {
		v := r.URL.Query()
		v.Set("per_page", strconv.Itoa(perPage))
		v.Set("cursor", "v1_"+strconv.FormatInt(last, 10))
		w.Header().Set("Link", fmt.Sprintf("<%s%s?%s>; rel=\"next\"", c.base, r.URL.EscapedPath(), v.Encode()))
	}
	s.respond(w, r, c, http.StatusOK, out)
}

func (s *Server) deliveryLocked(r *http.Request, c *call) *deliveryRec {
	h := s.hookOfLocked(r, c)
	if h == nil {
		return nil
	}
	id := pathID(r, "delivery_id")
	for _, d := range h.deliveries {
		if d.id == id {
			return d
		}
	}
	return nil
}

func (s *Server) handleGetDelivery(w http.ResponseWriter, r *http.Request, c *call) {
	s.mu.Lock()
	d := s.deliveryLocked(r, c)
	if d == nil {
		s.mu.Unlock()
		s.respond(w, r, c, http.StatusNotFound, errBody(http.StatusNotFound, "Not Found"))
		return
	}
	body := d.item()
	body["url"] = d.hook.url
	body["request"] = map[string]any{"headers": d.reqHeaders, "payload": json.RawMessage(d.payload)}
	body["response"] = map[string]any{"headers": d.respHeaders, "payload": d.respBody}
	s.mu.Unlock()
	s.respond(w, r, c, http.StatusOK, body)
}

// handleRedeliver sends a delivery again, with the same GUID; the new
// attempt is listed with redelivery true.
func (s *Server) handleRedeliver(w http.ResponseWriter, r *http.Request, c *call) {
	s.mu.Lock()
	d := s.deliveryLocked(r, c)
	if d == nil {
		s.mu.Unlock()
		s.respond(w, r, c, http.StatusNotFound, errBody(http.StatusNotFound, "Not Found"))
		return
	}
	again := &deliveryRec{
		guid: d.guid, hook: d.hook, redelivery: true, event: d.event, action: d.action,
		installationID: d.installationID, repositoryID: d.repositoryID, reqHeaders: d.reqHeaders, payload: d.payload,
	}
	if !s.closed {
		s.startLocked()
		s.out.push(again, false)
	}
	s.mu.Unlock()
	s.respond(w, r, c, http.StatusAccepted, map[string]any{})
}

// handleListHooks lists the repository's or organization's webhooks
// (GET /repos/{owner}/{repo}/hooks, GET /orgs/{org}/hooks), in GitHub's
// shape: config.secret is "********" when one is set, never the secret.
// Stand-in hooks get every event it sends, so events lists those.
func (s *Server) handleListHooks(w http.ResponseWriter, r *http.Request, c *call) {
	kind, typ := hookRepo, "Repository"
	if c.scope.kind == "orgs" {
		kind, typ = hookOrg, "Organization"
	}
	s.mu.Lock()
	out := []map[string]any{}
	for _, h := range s.sortedHooksLocked() {
		if h.kind != kind || h.target != strings.ToLower(c.scope.name) {
			continue
		}
		self := fmt.Sprintf("%s/%s/%s/hooks/%d", c.base, c.scope.kind, c.scope.name, h.id)
		cfg := map[string]any{"url": h.url, "content_type": "json", "insecure_ssl": "0"}
		if h.secret != "" {
			cfg["secret"] = "********"
		}
		out = append(out, map[string]any{
			"id": h.id, "type": typ, "name": "web", "active": true,
			"events": []string{"workflow_job", "workflow_run"}, "config": cfg,
			"url": self, "ping_url": self + "/pings", "deliveries_url": self + "/deliveries",
		})
	}
	s.mu.Unlock()
	s.respond(w, r, c, http.StatusOK, out)
}
