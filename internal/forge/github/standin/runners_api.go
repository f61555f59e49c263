package standin

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// defaultLabels are GitHub's read-only labels of self-hosted runners.
var defaultLabels = map[string]bool{"self-hosted": true, "linux": true, "x64": true, "arm64": true, "macos": true, "windows": true}

type labelJSON struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"`
}

func (s *Server) labelsLocked(names []string) []labelJSON {
	out := make([]labelJSON, 0, len(names))
	for _, n := range names {
		k := strings.ToLower(n)
		id, ok := s.labelIDs[k]
		if !ok {
			id = int64(100 + len(s.labelIDs))
			s.labelIDs[k] = id
		}
		typ := "custom"
		if defaultLabels[k] {
			typ = "read-only"
		}
		out = append(out, labelJSON{ID: id, Name: n, Type: typ})
	}
	return out
}

// runnerObjectLocked renders GitHub's REST runner object.
func (s *Server) runnerObjectLocked(r *runner) map[string]any {
	o := map[string]any{
		"id": r.id, "name": r.name, "os": "unknown", "status": "offline", "busy": r.busy,
		"ephemeral": true, "runner_group_id": r.groupID, "labels": s.labelsLocked(r.labels), "version": nil,
	}
	if r.version != "" {
		o["os"], o["version"] = "Linux", r.version
	}
	if r.alive() {
		o["status"] = "online"
	}
	return o
}

// versionLess compares dotted numeric versions ("3.9" < "3.10").
func versionLess(a, b string) bool {
	pa, pb := strings.Split(strings.TrimPrefix(a, "v"), "."), strings.Split(strings.TrimPrefix(b, "v"), ".")
	for i := range max(len(pa), len(pb)) {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// jitRunnerFile and jitCredentials are the two parts of an encoded JIT
// config: base64 of {".runner": base64(json), ".credentials":
// base64(json)}, the shape of the real one. The content is the stand-in's.
type jitRunnerFile struct {
	AgentID    int64  `json:"agentId"`
	AgentName  string `json:"agentName"`
	PoolID     int64  `json:"poolId"`
	ServerURL  string `json:"serverUrl"`
	GitHubURL  string `json:"gitHubUrl"`
	WorkFolder string `json:"workFolder"`
	Ephemeral  bool   `json:"ephemeral"`
}

type jitCredentials struct {
	Scheme string `json:"scheme"`
	Data   struct {
		Token string `json:"token"`
	} `json:"data"`
}

func encodeJIT(rf jitRunnerFile, token string) string {
	var cr jitCredentials
	cr.Scheme, cr.Data.Token = "OAuth", token
	a, _ := json.Marshal(rf)
	b, _ := json.Marshal(cr)
	outer, _ := json.Marshal(map[string]string{
		".runner":      base64.StdEncoding.EncodeToString(a),
		".credentials": base64.StdEncoding.EncodeToString(b),
	})
	return base64.StdEncoding.EncodeToString(outer)
}

func unprocessable(field string) map[string]string {
	return errBody(http.StatusUnprocessableEntity, fmt.Sprintf("Invalid request.\n\n%q wasn't supplied.", field))
}

func (s *Server) handleJIT(w http.ResponseWriter, r *http.Request, c *call) {
	if s.opt.GHESVersion != "" && versionLess(s.opt.GHESVersion, jitMinVer) {
		s.respond(w, r, c, http.StatusNotFound, errBody(http.StatusNotFound, "Not Found"))
		return
	}
	var req struct {
		Name          *string  `json:"name"`
		RunnerGroupID *int64   `json:"runner_group_id"`
		Labels        []string `json:"labels"`
		WorkFolder    string   `json:"work_folder"`
	}
	if err := readJSON(r, &req); err != nil {
		s.respond(w, r, c, http.StatusBadRequest, errBody(http.StatusBadRequest, "Problems parsing JSON"))
		return
	}
	switch {
	case req.Name == nil || *req.Name == "":
		s.respond(w, r, c, http.StatusUnprocessableEntity, unprocessable("name"))
		return
	case req.RunnerGroupID == nil:
		s.respond(w, r, c, http.StatusUnprocessableEntity, unprocessable("runner_group_id"))
		return
	case req.Labels == nil:
		s.respond(w, r, c, http.StatusUnprocessableEntity, unprocessable("labels"))
		return
	case len(req.Labels) < 1 || len(req.Labels) > 100:
		s.respond(w, r, c, http.StatusUnprocessableEntity, errBody(http.StatusUnprocessableEntity,
			fmt.Sprintf("Invalid request.\n\nFor 'properties/labels', %d items is not between 1 and 100.", len(req.Labels))))
		return
	}
	if *req.RunnerGroupID != 1 {
		s.respond(w, r, c, http.StatusNotFound, errBody(http.StatusNotFound, "Not Found"))
		return
	}
	if req.WorkFolder == "" {
		req.WorkFolder = "_work"
	}
	s.mu.Lock()
	if s.nameTakenLocked(c.scope, *req.Name) {
		s.mu.Unlock()
		s.respond(w, r, c, http.StatusConflict, errBody(http.StatusConflict,
			fmt.Sprintf("Already exists - A runner with the name %s already exists.", *req.Name)))
		return
	}
	rn := s.newRunnerLocked(c.scope, *req.Name, req.Labels)
	jit := encodeJIT(jitRunnerFile{
		AgentID: rn.id, AgentName: rn.name, PoolID: 1, ServerURL: c.base,
		GitHubURL: c.web + "/" + webPath(c.scope), WorkFolder: req.WorkFolder, Ephemeral: true,
	}, rn.cred)
	body := map[string]any{"runner": s.runnerObjectLocked(rn), "encoded_jit_config": jit}
	s.mu.Unlock()
	s.respond(w, r, c, http.StatusCreated, body)
}

// webPath is the scope's path on the web ("o/r", "o", "enterprises/e"),
// the URL config.sh takes.
func webPath(sc scope) string {
	if sc.kind == "enterprises" {
		return sc.String()
	}
	return sc.name
}

func (s *Server) newRunnerLocked(sc scope, name string, labels []string) *runner {
	s.nextRunner++
	rn := &runner{
		id: s.nextRunner, name: name, scope: sc, labels: append([]string(nil), labels...),
		groupID: 1, cred: randomToken(40), registered: true,
	}
	s.runners[rn.id] = rn
	s.byCred[rn.cred] = rn
	return rn
}

func (s *Server) handleRegToken(remove bool) func(http.ResponseWriter, *http.Request, *call) {
	return func(w http.ResponseWriter, r *http.Request, c *call) {
		s.mu.Lock()
		tok := strings.ToUpper(randomToken(29))
		t := &regToken{scope: c.scope, expires: s.now().Add(time.Hour).Truncate(time.Second), remove: remove}
		s.regTokens[tok] = t
		s.mu.Unlock()
		s.respond(w, r, c, http.StatusCreated, map[string]any{"token": tok, "expires_at": t.expires.UTC().Format(stamp)})
	}
}

func (s *Server) handleListRunners(w http.ResponseWriter, r *http.Request, c *call) {
	name := r.URL.Query().Get("name")
	s.mu.Lock()
	var all []*runner
	for _, rn := range s.registeredLocked(c.scope) {
		if name == "" || strings.EqualFold(rn.name, name) {
			all = append(all, rn)
		}
	}
	from, to := page(w, r, c, len(all))
	out := []map[string]any{}
	for _, rn := range all[from:to] {
		out = append(out, s.runnerObjectLocked(rn))
	}
	s.mu.Unlock()
	s.respond(w, r, c, http.StatusOK, map[string]any{"total_count": len(all), "runners": out})
}

func (s *Server) scopeRunnerLocked(r *http.Request, c *call) *runner {
	rn := s.runners[pathID(r, "runner_id")]
	if rn == nil || !rn.registered || !strings.EqualFold(rn.scope.String(), c.scope.String()) {
		return nil
	}
	return rn
}

func (s *Server) handleGetRunner(w http.ResponseWriter, r *http.Request, c *call) {
	s.mu.Lock()
	rn := s.scopeRunnerLocked(r, c)
	if rn == nil {
		s.mu.Unlock()
		s.respond(w, r, c, http.StatusNotFound, errBody(http.StatusNotFound, "Not Found"))
		return
	}
	body := s.runnerObjectLocked(rn)
	s.mu.Unlock()
	s.respond(w, r, c, http.StatusOK, body)
}

func (s *Server) handleDeleteRunner(w http.ResponseWriter, r *http.Request, c *call) {
	s.mu.Lock()
	rn := s.scopeRunnerLocked(r, c)
	switch {
	case rn == nil:
		s.mu.Unlock()
		s.respond(w, r, c, http.StatusNotFound, errBody(http.StatusNotFound, "Not Found"))
	case rn.busy:
		s.mu.Unlock()
		s.respond(w, r, c, http.StatusUnprocessableEntity, errBody(http.StatusUnprocessableEntity,
			fmt.Sprintf("Bad request - Runner %q is still running a job\"", rn.name)))
	default:
		s.removeLocked(rn)
		s.mu.Unlock()
		s.respond(w, r, c, http.StatusNoContent, nil)
	}
}

func (s *Server) handleRunnerLabels(w http.ResponseWriter, r *http.Request, c *call) {
	s.mu.Lock()
	rn := s.scopeRunnerLocked(r, c)
	if rn == nil {
		s.mu.Unlock()
		s.respond(w, r, c, http.StatusNotFound, errBody(http.StatusNotFound, "Not Found"))
		return
	}
	labels := s.labelsLocked(rn.labels)
	s.mu.Unlock()
	s.respond(w, r, c, http.StatusOK, map[string]any{"total_count": len(labels), "labels": labels})
}

func (s *Server) handleDownloads(w http.ResponseWriter, r *http.Request, c *call) {
	v := CurrentRunnerVersion
	var out []map[string]any
	for _, p := range []struct{ os, arch, ext string }{
		{"osx", "x64", "tar.gz"}, {"osx", "arm64", "tar.gz"}, {"linux", "x64", "tar.gz"},
		{"linux", "arm", "tar.gz"}, {"linux", "arm64", "tar.gz"}, {"win", "x64", "zip"}, {"win", "arm64", "zip"},
	} {
		file := fmt.Sprintf("actions-runner-%s-%s-%s.%s", p.os, p.arch, v, p.ext)
		sum := sha256.Sum256([]byte(file))
		out = append(out, map[string]any{
			"os": p.os, "architecture": p.arch, "filename": file,
			"download_url":    fmt.Sprintf("https://github.com/actions/runner/releases/download/v%s/%s", v, file),
			"sha256_checksum": hex.EncodeToString(sum[:]),
		})
	}
	s.respond(w, r, c, http.StatusOK, out)
}

func (s *Server) handleRunnerGroups(w http.ResponseWriter, r *http.Request, c *call) {
	g := map[string]any{
		"id": 1, "name": "Default", "visibility": "all", "default": true,
		"runners_url":                c.base + "/" + c.scope.String() + "/actions/runner-groups/1/runners",
		"inherited":                  false,
		"allows_public_repositories": false, "restricted_to_workflows": false, "selected_workflows": []string{},
		"workflow_restrictions_read_only": false,
	}
	s.respond(w, r, c, http.StatusOK, map[string]any{"total_count": 1, "runner_groups": []any{g}})
}
