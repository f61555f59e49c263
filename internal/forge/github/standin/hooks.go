package standin

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// GitHub's example payloads (see testdata/README.md) are the templates of
// the webhooks the stand-in sends.
//
//go:embed testdata/*.json
var templates embed.FS

var templateFile = map[string]string{
	"workflow_job queued":      "testdata/workflow_job.queued.2.json",
	"workflow_job in_progress": "testdata/workflow_job.in_progress.3.json",
	"workflow_job completed":   "testdata/workflow_job.completed.2.json",
	"workflow_run requested":   "testdata/workflow_run.requested.json",
	"workflow_run completed":   "testdata/workflow_run.completed.2.json",
	"organization":             "testdata/workflow_job.completed.2.json",
}

type hookKind int

const (
	hookRepo hookKind = iota
	hookOrg
	hookApp
)

// hook is a repository, organization or app webhook.
type hook struct {
	id         int64
	kind       hookKind
	target     string // lower-case "o/r" or "o"; "" for app hooks
	appID      int64
	url        string
	secret     corral.Secret
	deliveries []*deliveryRec
}

// hookTarget is a hook that gets one event, with the installation an app
// hook delivers for.
type hookTarget struct {
	h    *hook
	inst int64
}

func (s *Server) hooksForLocked(rp *repo) []hookTarget {
	var out []hookTarget
	for _, h := range s.sortedHooksLocked() {
		switch h.kind {
		case hookRepo:
			if h.target == strings.ToLower(rp.full()) {
				out = append(out, hookTarget{h: h})
			}
		case hookOrg:
			if h.target == strings.ToLower(rp.owner) {
				out = append(out, hookTarget{h: h})
			}
		case hookApp:
			for _, in := range s.appInstallationsLocked(h.appID) {
				if s.tokenCoversLocked(&instToken{inst: in}, rp.full()) {
					out = append(out, hookTarget{h: h, inst: in.id})
				}
			}
		}
	}
	return out
}

func (s *Server) sortedHooksLocked() []*hook {
	var hs []*hook
	for _, h := range s.hooks {
		hs = append(hs, h)
	}
	for i := 1; i < len(hs); i++ {
		for k := i; k > 0 && hs[k].id < hs[k-1].id; k-- {
			hs[k], hs[k-1] = hs[k-1], hs[k]
		}
	}
	return hs
}

func loadTemplate(key string) map[string]any {
	b, err := templates.ReadFile(templateFile[key])
	if err != nil {
		panic(fmt.Sprintf("standin: template %s: %v", key, err)) // embedded: cannot happen
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		panic(fmt.Sprintf("standin: template %s: %v", key, err))
	}
	return m
}

// replaceStrings replaces old with new in every string inside v.
func replaceStrings(v any, old, new string) any {
	switch x := v.(type) {
	case string:
		return strings.ReplaceAll(x, old, new)
	case map[string]any:
		for k, e := range x {
			x[k] = replaceStrings(e, old, new)
		}
	case []any:
		for i, e := range x {
			x[i] = replaceStrings(e, old, new)
		}
	}
	return v
}

// contextLocked fills repository, organization, enterprise and
// installation of payload p for repository rp.
func (s *Server) contextLocked(p map[string]any, rp *repo, inst int64) {
	o := s.orgs[strings.ToLower(rp.owner)]
	if tr, ok := p["repository"].(map[string]any); ok {
		oldFull, _ := tr["full_name"].(string)
		owner, _ := tr["owner"].(map[string]any)
		oldOwner, _ := owner["login"].(string)
		replaceStrings(tr, oldFull, rp.full())
		replaceStrings(tr, "/"+oldOwner, "/"+o.login)
		for k, v := range s.repoObjectLocked(rp, hookAPIBase, hookWebBase) {
			if k != "owner" {
				tr[k] = v
			}
		}
		owner["login"], owner["id"], owner["type"] = o.login, o.id, "Organization"
		owner["node_id"] = fmt.Sprintf("O_kgDO%d", o.id)
	}
	org := loadTemplate("organization")["organization"].(map[string]any)
	oldLogin, _ := org["login"].(string)
	replaceStrings(org, oldLogin, o.login)
	org["id"], org["node_id"] = o.id, fmt.Sprintf("O_kgDO%d", o.id)
	p["organization"] = org
	delete(p, "deployment")
	delete(p, "enterprise")
	if e := s.ents[strings.ToLower(o.enterprise)]; o.enterprise != "" && e != nil {
		p["enterprise"] = map[string]any{
			"id": e.id, "slug": e.slug, "name": e.slug, "node_id": fmt.Sprintf("E_kgDO%d", e.id),
			"html_url": hookWebBase + "/enterprises/" + e.slug, "avatar_url": "https://avatars.githubusercontent.com/b/1",
			"created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "website_url": nil, "description": nil,
		}
	}
	delete(p, "installation")
	if inst != 0 {
		p["installation"] = map[string]any{"id": inst, "node_id": fmt.Sprintf("MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u%d", inst)}
	}
}

// emitJobLocked sends workflow_job action for j to every matching hook.
func (s *Server) emitJobLocked(action string, j *job) {
	for _, t := range s.hooksForLocked(j.run.repo) {
		p := loadTemplate("workflow_job " + action)
		p["action"] = action
		wj, _ := p["workflow_job"].(map[string]any)
		for k, v := range s.jobObjectLocked(j, hookAPIBase, hookWebBase) {
			wj[k] = v
		}
		s.contextLocked(p, j.run.repo, t.inst)
		s.sendLocked(t, "workflow_job", action, p, j.run.repo)
	}
}

// emitRunLocked sends workflow_run action for rn to every matching hook.
func (s *Server) emitRunLocked(action string, rn *run) {
	for _, t := range s.hooksForLocked(rn.repo) {
		p := loadTemplate("workflow_run " + action)
		p["action"] = action
		s.contextLocked(p, rn.repo, t.inst)
		wr, _ := p["workflow_run"].(map[string]any)
		for k, v := range s.runObjectLocked(rn, hookAPIBase, hookWebBase) {
			wr[k] = v
		}
		s.sendLocked(t, "workflow_run", action, p, rn.repo)
	}
}

// sendLocked records and queues one delivery, applying the webhook faults.
func (s *Server) sendLocked(t hookTarget, event, action string, p map[string]any, rp *repo) {
	if s.closed || t.h.url == "" {
		return
	}
	body, err := json.Marshal(p)
	if err != nil {
		s.log.Error("marshal webhook", "err", err)
		return
	}
	s.startLocked()
	f := s.faults
	if s.rng.Float64() < f.DropRate {
		s.out.bump(func(w *WebhookStats) { w.Dropped++ })
		return
	}
	rec := &deliveryRec{
		guid: s.guidLocked(), hook: t.h, event: event, action: action,
		installationID: t.inst, repositoryID: rp.id, payload: body,
	}
	if s.rng.Float64() < f.FailDeliveryRate {
		s.nextDelivery++
		rec.id, rec.deliveredAt = s.nextDelivery, s.now().UTC()
		rec.status, rec.statusCode, rec.duration = "Invalid HTTP Response: 502", 502, 10
		rec.reqHeaders = s.hookHeaders(rec)
		t.h.deliveries = append(t.h.deliveries, rec)
		s.out.bump(func(w *WebhookStats) { w.FaultFailed++; w.Failed++ })
		return
	}
	hold := s.rng.Float64() < f.ReorderRate
	rec.reqHeaders = s.hookHeaders(rec)
	copies := []*deliveryRec{rec}
	if s.rng.Float64() < f.DuplicateRate {
		dup := *rec
		copies = append(copies, &dup)
		s.out.bump(func(w *WebhookStats) { w.Duplicated++ })
	}
	for i, d := range copies {
		s.pushLocked(d, hold && i == 0, f.MaxDelay)
	}
}

// guidLocked returns a version-4-shaped GUID from the seeded source.
func (s *Server) guidLocked() string {
	a, b := s.rng.Uint64(), s.rng.Uint64()
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", a>>32, (a>>16)&0xffff, a&0xfff, (b>>48)&0x3fff|0x8000, b&0xffffffffffff)
}

// hookHeaders are the delivery headers GitHub sends.
func (s *Server) hookHeaders(d *deliveryRec) map[string]string {
	h := map[string]string{
		"Accept":            "*/*",
		"Content-Type":      "application/json",
		"User-Agent":        "GitHub-Hookshot/c3f2b1e",
		"X-GitHub-Event":    d.event,
		"X-GitHub-Delivery": d.guid,
		"X-GitHub-Hook-ID":  fmt.Sprint(d.hook.id),
	}
	switch d.hook.kind {
	case hookRepo:
		h["X-GitHub-Hook-Installation-Target-Type"] = "repository"
		h["X-GitHub-Hook-Installation-Target-ID"] = fmt.Sprint(d.repositoryID)
	case hookOrg:
		h["X-GitHub-Hook-Installation-Target-Type"] = "organization"
		if o := s.orgs[d.hook.target]; o != nil {
			h["X-GitHub-Hook-Installation-Target-ID"] = fmt.Sprint(o.id)
		}
	case hookApp:
		h["X-GitHub-Hook-Installation-Target-Type"] = "integration"
		h["X-GitHub-Hook-Installation-Target-ID"] = fmt.Sprint(d.hook.appID)
	}
	return h
}

// recordDelivery is the sender's report of one attempt.
func (s *Server) recordDelivery(d *deliveryRec, code int, status string, took time.Duration, respHeaders map[string]string, respBody string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextDelivery++
	d.id, d.deliveredAt = s.nextDelivery, s.now().UTC()
	d.statusCode, d.status, d.duration = code, status, took.Seconds()
	d.respHeaders, d.respBody = respHeaders, respBody
	d.hook.deliveries = append(d.hook.deliveries, d)
}
