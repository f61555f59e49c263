package standin

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Runner scale sets: the Actions service side of GitHub's runner
// scale-set protocol, as GitHub's MIT-licensed Go client
// (github.com/actions/scaleset) and ARC's listener speak it. Facts about
// the protocol were read there; nothing is copied. Served at / and under
// /api/v3 alike; calls are counted (Stats.Calls) and the message queue
// fails at Faults.LongPollFailRate.
//
//	POST /actions/runner-registration  RemoteAuth <registration token>
//	     {url, runner_event: "register"} (no name: the admin exchange)
//	     -> 200 {url: <Actions service URL>, token: <admin JWT, exp in 1 h>}
//
// On the Actions service (/_actions/, Bearer <admin token>; every call but
// the message queue's must carry api-version, 6.0-preview for the client):
//
//	GET    _apis/runtime/runnergroups/?groupName=N     -> {count, value:[{id, name, isDefaultGroup}]}
//	GET    _apis/runtime/runnerscalesets?runnerGroupId=&name= -> {count, value}
//	POST   _apis/runtime/runnerscalesets {name, runnerGroupId, labels:[{name,type}]} -> 200 scale set
//	GET    _apis/runtime/runnerscalesets/{id}          -> 200 | 404
//	DELETE _apis/runtime/runnerscalesets/{id}          -> 204
//	POST   _apis/runtime/runnerscalesets/{id}/sessions {ownerName} -> 200 session
//	       | 409 while another session of the scale set is alive (polled within SessionTTL)
//	PATCH  _apis/runtime/runnerscalesets/{id}/sessions/{sid} -> 200 session, new queue token
//	DELETE _apis/runtime/runnerscalesets/{id}/sessions/{sid} -> 204
//	POST   _apis/runtime/runnerscalesets/{id}/acquirejobs  [runner request ids]
//	       (Bearer <queue token>) -> 200 {count, value: ids acquired}
//	POST   _apis/runtime/runnerscalesets/{id}/generatejitconfig {name, workFolder}
//	       -> 200 {runner:{id,name,runnerScaleSetId}, encodedJITConfig}
//	GET    _actions/_apis/runtime/messages/{sid}?lastMessageId=N  (the session's messageQueueUrl)
//	       Bearer <queue token>, X-ScaleSetMaxCapacity -> 200 message | 202 none within
//	       the long poll | 401 queue token replaced | 404 session or scale set gone
//	DELETE <messageQueueUrl>/{messageId} -> 204
//
// A message is {messageId, messageType: "RunnerScaleSetJobMessages", body:
// <JSON array as a string> of JobAvailable, JobAssigned, JobStarted and
// JobCompleted items keyed by runnerRequestId, statistics}. A job is
// offered to the scale set whose name is its only runs-on label (or whose
// labels include all of its labels); acquired jobs are assigned to it and
// go only to runners made by its generatejitconfig. A scale set deleted
// (DeleteScaleSet) answers 404 and its unstarted jobs wait for a scale set
// of that name to be registered again.

const actionsService = "/_actions"

// DefaultSessionTTL is how long a message session stays alive without a
// poll: a listener that crashed blocks a new session (409) that long.
const DefaultSessionTTL = 10 * time.Second

type scaleSet struct {
	id      int64
	name    string
	sc      scope
	labels  []string
	created time.Time
	deleted bool
	session *ssSession
	nextMsg int64
	msgs    []ssMessage      // not acknowledged yet, oldest first
	pending []map[string]any // job items not in a message yet
}

type ssSession struct {
	id, owner, queueToken string
	lastPoll              time.Time
	set                   *scaleSet
}

type ssMessage struct {
	id    int64
	items []map[string]any
}

type adminToken struct {
	sc      scope
	expires time.Time
}

// ssState is the stand-in's scale-set state, made on first use.
type ssState struct {
	sets     map[int64]*scaleSet
	admins   map[string]*adminToken
	sessions map[string]*ssSession // by session id
	queue    map[string]*ssSession // by queue token
	nextID   int64
	nextReq  int64
}

func (s *Server) ssLocked() *ssState {
	if s.ss == nil {
		s.ss = &ssState{sets: map[int64]*scaleSet{}, admins: map[string]*adminToken{},
			sessions: map[string]*ssSession{}, queue: map[string]*ssSession{}, nextID: 0, nextReq: 9000}
	}
	return s.ss
}

func (s *Server) sessionTTL() time.Duration {
	if s.opt.SessionTTL > 0 {
		return s.opt.SessionTTL
	}
	return DefaultSessionTTL
}

// adminExchangeLocked answers the registration-token-for-admin-token
// exchange (the scale-set client's first call).
func (s *Server) adminExchangeLocked(w http.ResponseWriter, r *http.Request, t *regToken) {
	st := s.ssLocked()
	exp := time.Now().Add(time.Hour)
	claims, _ := json.Marshal(map[string]any{"exp": exp.Unix(), "iat": time.Now().Unix(), "scp": t.scope.String()})
	enc := base64.RawURLEncoding
	tok := enc.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + enc.EncodeToString(claims) + "." + enc.EncodeToString([]byte(randomToken(32)))
	st.admins[tok] = &adminToken{sc: t.scope, expires: exp}
	writeJSONRaw(w, http.StatusOK, map[string]string{"url": baseURL(r) + actionsService + "/", "token": tok})
}

func baseURL(r *http.Request) string {
	p, _ := r.Context().Value(prefixKey{}).(string)
	if r.TLS != nil {
		return "https://" + r.Host + p
	}
	return "http://" + r.Host + p
}

func (s *Server) scaleSetRoutes(mux *http.ServeMux) {
	h := func(name string, f func(http.ResponseWriter, *http.Request)) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.mu.Lock()
			s.calls[name]++
			s.mu.Unlock()
			// The message queue URL is used as given; the rest carries
			// the API version.
			queue := strings.Contains(r.URL.Path, "/_apis/runtime/messages/")
			if !queue && r.URL.Query().Get("api-version") == "" {
				writeError(w, http.StatusBadRequest, "api-version is required")
				return
			}
			f(w, r)
		})
	}
	const base = actionsService + "/_apis/runtime/"
	mux.Handle("GET "+base+"runnergroups/", h("GET scaleset runnergroups", s.handleSSGroups))
	mux.Handle("GET "+base+"runnerscalesets", h("GET runnerscalesets", s.handleSSList))
	mux.Handle("POST "+base+"runnerscalesets", h("POST runnerscalesets", s.handleSSCreate))
	mux.Handle("GET "+base+"runnerscalesets/{id}", h("GET runnerscaleset", s.handleSSGet))
	mux.Handle("DELETE "+base+"runnerscalesets/{id}", h("DELETE runnerscaleset", s.handleSSDelete))
	mux.Handle("POST "+base+"runnerscalesets/{id}/sessions", h("POST scaleset session", s.handleSSSession))
	mux.Handle("PATCH "+base+"runnerscalesets/{id}/sessions/{sid}", h("PATCH scaleset session", s.handleSSRefresh))
	mux.Handle("DELETE "+base+"runnerscalesets/{id}/sessions/{sid}", h("DELETE scaleset session", s.handleSSEnd))
	mux.Handle("POST "+base+"runnerscalesets/{id}/acquirejobs", h("POST acquirejobs", s.handleSSAcquire))
	mux.Handle("POST "+base+"runnerscalesets/{id}/generatejitconfig", h("POST scaleset generatejitconfig", s.handleSSJIT))
	mux.Handle("GET "+base+"messages/{sid}", h("GET scaleset message", s.handleSSMessage))
	mux.Handle("DELETE "+base+"messages/{sid}/{mid}", h("DELETE scaleset message", s.handleSSAck))
}

// adminLocked checks the admin token and returns its scope.
func (s *Server) adminLocked(w http.ResponseWriter, r *http.Request) (scope, bool) {
	a := s.ssLocked().admins[bearer(r, "Bearer ")]
	if a == nil || !time.Now().Before(a.expires) {
		writeError(w, http.StatusUnauthorized, "Unauthorized")
		return scope{}, false
	}
	return a.sc, true
}

// setLocked finds the scale set {id} of the admin token's scope.
func (s *Server) setLocked(w http.ResponseWriter, r *http.Request) *scaleSet {
	sc, ok := s.adminLocked(w, r)
	if !ok {
		return nil
	}
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	ss := s.ssLocked().sets[id]
	if ss == nil || ss.deleted || ss.sc != sc {
		writeError(w, http.StatusNotFound, fmt.Sprintf("Runner scale set %d not found.", id))
		return nil
	}
	return ss
}

func (s *Server) handleSSGroups(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.adminLocked(w, r); !ok {
		return
	}
	var out []map[string]any
	if name := r.URL.Query().Get("groupName"); strings.EqualFold(name, "default") {
		out = append(out, map[string]any{"id": 1, "name": "Default", "isDefaultGroup": true})
	}
	writeJSONRaw(w, http.StatusOK, map[string]any{"count": len(out), "value": out})
}

func (ss *scaleSet) object() map[string]any {
	labels := []map[string]string{}
	for _, l := range ss.labels {
		labels = append(labels, map[string]string{"name": l, "type": "System"})
	}
	return map[string]any{"id": ss.id, "name": ss.name, "runnerGroupId": 1, "runnerGroupName": "Default",
		"labels": labels, "createdOn": ss.created.UTC().Format(time.RFC3339)}
}

func (s *Server) handleSSList(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc, ok := s.adminLocked(w, r)
	if !ok {
		return
	}
	name := r.URL.Query().Get("name")
	out := []map[string]any{}
	for _, ss := range s.ssLocked().sets {
		if !ss.deleted && ss.sc == sc && (name == "" || strings.EqualFold(ss.name, name)) {
			out = append(out, ss.object())
		}
	}
	writeJSONRaw(w, http.StatusOK, map[string]any{"count": len(out), "value": out})
}

func (s *Server) handleSSCreate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name          string `json:"name"`
		RunnerGroupID int64  `json:"runnerGroupId"`
		Labels        []struct {
			Name string `json:"name"`
		} `json:"labels"`
	}
	if err := readJSON(r, &req); err != nil || req.Name == "" {
		writeError(w, http.StatusBadRequest, "a scale set needs a name")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sc, ok := s.adminLocked(w, r)
	if !ok {
		return
	}
	if req.RunnerGroupID > 1 {
		writeError(w, http.StatusNotFound, fmt.Sprintf("Runner group %d not found.", req.RunnerGroupID))
		return
	}
	st := s.ssLocked()
	for _, ss := range st.sets {
		if !ss.deleted && ss.sc == sc && strings.EqualFold(ss.name, req.Name) {
			writeError(w, http.StatusConflict, fmt.Sprintf("A runner scale set named %s already exists.", req.Name))
			return
		}
	}
	st.nextID++
	ss := &scaleSet{id: st.nextID, name: req.Name, sc: sc, created: time.Now()}
	for _, l := range req.Labels {
		ss.labels = append(ss.labels, l.Name)
	}
	if len(ss.labels) == 0 {
		ss.labels = []string{req.Name}
	}
	st.sets[ss.id] = ss
	// Jobs that waited for a scale set of this name are offered now.
	for _, j := range s.sortedJobsLocked() {
		if j.status == StatusQueued && j.set == nil {
			s.offerLocked(j)
		}
	}
	writeJSONRaw(w, http.StatusOK, ss.object())
}

func (s *Server) handleSSGet(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.setLocked(w, r); ss != nil {
		writeJSONRaw(w, http.StatusOK, ss.object())
	}
}

func (s *Server) handleSSDelete(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.setLocked(w, r); ss != nil {
		s.deleteSetLocked(ss)
		w.WriteHeader(http.StatusNoContent)
	}
}

// DeleteScaleSet deletes the scale set named name in scope path
// ("repos/o/r", "orgs/o"), as GitHub does with scale sets idle too long.
// Its session ends; its jobs not started wait for it to come back.
func (s *Server) DeleteScaleSet(scopePath, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range s.ssLocked().sets {
		if !ss.deleted && ss.sc.String() == scopePath && strings.EqualFold(ss.name, name) {
			s.deleteSetLocked(ss)
			return true
		}
	}
	return false
}

func (s *Server) deleteSetLocked(ss *scaleSet) {
	ss.deleted = true
	if ss.session != nil {
		s.endSessionLocked(ss.session)
	}
	// Its idle runners go with it (their sessions end, so the runners
	// exit); a busy one finishes its job first.
	for _, rn := range s.runners {
		if rn.set == ss && rn.registered && !rn.busy {
			s.removeLocked(rn)
		}
	}
	for _, j := range s.jobs {
		if j.set == ss && j.status == StatusQueued {
			j.set, j.acquired = nil, false
		}
	}
	s.notifyLocked()
}

func (s *Server) endSessionLocked(se *ssSession) {
	st := s.ssLocked()
	delete(st.sessions, se.id)
	delete(st.queue, se.queueToken)
	if se.set.session == se {
		se.set.session = nil
	}
}

func (s *Server) sessionObject(r *http.Request, se *ssSession) map[string]any {
	return map[string]any{"sessionId": se.id, "ownerName": se.owner, "runnerScaleSet": se.set.object(),
		"messageQueueUrl":         baseURL(r) + actionsService + "/_apis/runtime/messages/" + se.id,
		"messageQueueAccessToken": se.queueToken, "statistics": s.statsLocked(se.set)}
}

func (s *Server) handleSSSession(w http.ResponseWriter, r *http.Request) {
	var req struct {
		OwnerName string `json:"ownerName"`
	}
	_ = readJSON(r, &req)
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.setLocked(w, r)
	if ss == nil {
		return
	}
	if se := ss.session; se != nil {
		if time.Since(se.lastPoll) < s.sessionTTL() {
			writeJSONRaw(w, http.StatusConflict, map[string]string{"typeName": "TaskAgentSessionConflictException",
				"message": fmt.Sprintf("The scale set %s already has an active session for owner %s.", ss.name, se.owner)})
			return
		}
		s.endSessionLocked(se) // expired: replaced
	}
	se := &ssSession{id: uuidLike(), owner: req.OwnerName, queueToken: randomToken(40), lastPoll: time.Now(), set: ss}
	ss.session = se
	st := s.ssLocked()
	st.sessions[se.id], st.queue[se.queueToken] = se, se
	// A new session gets every job not yet acquired offered again.
	ss.msgs, ss.pending = nil, nil
	for _, j := range s.sortedJobsLocked() {
		if j.set == ss && j.status == StatusQueued && !j.acquired {
			ss.pending = append(ss.pending, s.jobItem("JobAvailable", j))
		}
	}
	writeJSONRaw(w, http.StatusOK, s.sessionObject(r, se))
}

func (s *Server) sessionOfLocked(w http.ResponseWriter, r *http.Request) *ssSession {
	ss := s.setLocked(w, r)
	if ss == nil {
		return nil
	}
	se := s.ssLocked().sessions[r.PathValue("sid")]
	if se == nil || se.set != ss {
		writeError(w, http.StatusNotFound, "session not found")
		return nil
	}
	return se
}

func (s *Server) handleSSRefresh(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if se := s.sessionOfLocked(w, r); se != nil {
		st := s.ssLocked()
		delete(st.queue, se.queueToken)
		se.queueToken, se.lastPoll = randomToken(40), time.Now()
		st.queue[se.queueToken] = se
		writeJSONRaw(w, http.StatusOK, s.sessionObject(r, se))
	}
}

func (s *Server) handleSSEnd(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if se := s.sessionOfLocked(w, r); se != nil {
		s.endSessionLocked(se)
		w.WriteHeader(http.StatusNoContent)
	}
}

// queueSessionLocked checks a queue token for session sid.
func (s *Server) queueSessionLocked(w http.ResponseWriter, r *http.Request) *ssSession {
	st := s.ssLocked()
	se := st.queue[bearer(r, "Bearer ")]
	if se == nil {
		if st.sessions[r.PathValue("sid")] == nil {
			writeError(w, http.StatusNotFound, "session not found")
		} else {
			writeError(w, http.StatusUnauthorized, "message queue token expired")
		}
		return nil
	}
	if sid := r.PathValue("sid"); sid != "" && sid != se.id {
		writeError(w, http.StatusUnauthorized, "message queue token is not this session's")
		return nil
	}
	return se
}

func (s *Server) handleSSMessage(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if rate := s.faults.LongPollFailRate; rate > 0 && s.rng.Float64() < rate {
		s.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "the broker did not answer")
		return
	}
	s.mu.Unlock()
	last, _ := strconv.ParseInt(r.URL.Query().Get("lastMessageId"), 10, 64)
	timer := time.NewTimer(s.ssPoll())
	defer timer.Stop()
	for {
		s.mu.Lock()
		se := s.queueSessionLocked(w, r)
		if se == nil {
			s.mu.Unlock()
			return
		}
		se.lastPoll = time.Now()
		ss := se.set
		for len(ss.msgs) > 0 && ss.msgs[0].id <= last {
			ss.msgs = ss.msgs[1:] // an id the client saw: acknowledged implicitly
		}
		if len(ss.msgs) == 0 && len(ss.pending) > 0 {
			ss.nextMsg++
			ss.msgs = append(ss.msgs, ssMessage{id: ss.nextMsg, items: ss.pending})
			ss.pending = nil
		}
		if len(ss.msgs) > 0 {
			m := ss.msgs[0]
			body, _ := json.Marshal(m.items)
			out := map[string]any{"messageId": m.id, "messageType": "RunnerScaleSetJobMessages",
				"body": string(body), "statistics": s.statsLocked(ss)}
			s.mu.Unlock()
			writeJSONRaw(w, http.StatusOK, out)
			return
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			w.WriteHeader(http.StatusAccepted)
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (s *Server) ssPoll() time.Duration {
	if s.opt.ScaleSetLongPoll > 0 {
		return s.opt.ScaleSetLongPoll
	}
	return maxPoll
}

func (s *Server) handleSSAck(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	se := s.queueSessionLocked(w, r)
	if se == nil {
		return
	}
	id, _ := strconv.ParseInt(r.PathValue("mid"), 10, 64)
	se.set.msgs = slices.DeleteFunc(se.set.msgs, func(m ssMessage) bool { return m.id == id })
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleSSAcquire(w http.ResponseWriter, r *http.Request) {
	var ids []int64
	if err := readJSON(r, &ids); err != nil {
		writeError(w, http.StatusBadRequest, "want a JSON array of runner request ids")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	se := s.queueSessionLocked(w, r)
	if se == nil {
		return
	}
	if id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64); id != se.set.id || se.set.deleted {
		writeError(w, http.StatusNotFound, "scale set not found")
		return
	}
	got := []int64{}
	for _, j := range s.jobs {
		if j.set == se.set && j.status == StatusQueued && !j.acquired && slices.Contains(ids, j.requestID) {
			j.acquired = true
			got = append(got, j.requestID)
			se.set.pending = append(se.set.pending, s.jobItem("JobAssigned", j))
		}
	}
	slices.Sort(got)
	s.notifyLocked()
	writeJSONRaw(w, http.StatusOK, map[string]any{"count": len(got), "value": got})
}

func (s *Server) handleSSJIT(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name       string `json:"name"`
		WorkFolder string `json:"workFolder"`
	}
	if err := readJSON(r, &req); err != nil || req.Name == "" {
		writeError(w, http.StatusBadRequest, "a runner needs a name")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.setLocked(w, r)
	if ss == nil {
		return
	}
	if s.nameTakenLocked(ss.sc, req.Name) {
		writeJSONRaw(w, http.StatusConflict, map[string]string{"typeName": "AgentExistsException",
			"message": fmt.Sprintf("Agent %s already exists in the scale set.", req.Name)})
		return
	}
	if req.WorkFolder == "" {
		req.WorkFolder = "_work"
	}
	rn := s.newRunnerLocked(ss.sc, req.Name, ss.labels)
	rn.set = ss
	base := baseURL(r)
	jit := encodeJIT(jitRunnerFile{AgentID: rn.id, AgentName: rn.name, PoolID: 1, ServerURL: base,
		GitHubURL: base + "/" + webPath(ss.sc), WorkFolder: req.WorkFolder, Ephemeral: true}, rn.cred)
	writeJSONRaw(w, http.StatusOK, map[string]any{
		"runner":           map[string]any{"id": rn.id, "name": rn.name, "runnerScaleSetId": ss.id},
		"encodedJITConfig": jit,
	})
}

// offerLocked offers a queued job to the scale set that serves it, if any.
func (s *Server) offerLocked(j *job) {
	for _, ss := range s.ssLocked().sets {
		if ss.deleted || !s.coversLocked(ss.sc, j.run.repo) || !servesLabels(ss, j.labels) {
			continue
		}
		st := s.ssLocked()
		st.nextReq++
		j.set, j.requestID, j.acquired = ss, st.nextReq, false
		if ss.session != nil {
			ss.pending = append(ss.pending, s.jobItem("JobAvailable", j))
		}
		s.notifyLocked()
		return
	}
}

// servesLabels: a job's runs-on is the scale set's name, or a subset of
// its labels.
func servesLabels(ss *scaleSet, labels []string) bool {
	if len(labels) == 1 && strings.EqualFold(labels[0], ss.name) {
		return true
	}
	return len(labels) > 0 && matches(ss.labels, labels)
}

// scaleSetEventLocked tells a job's scale set that the job started or
// completed.
func (s *Server) scaleSetEventLocked(kind string, j *job) {
	if j.set == nil || j.set.deleted || j.set.session == nil {
		return
	}
	j.set.pending = append(j.set.pending, s.jobItem(kind, j))
	s.notifyLocked()
}

func (s *Server) jobItem(kind string, j *job) map[string]any {
	owner, name, _ := strings.Cut(j.run.repo.full(), "/")
	it := map[string]any{"messageType": kind, "runnerRequestId": j.requestID, "repositoryName": name,
		"ownerName": owner, "jobId": fmt.Sprintf("%x", j.id), "jobDisplayName": j.name,
		"workflowRunId": j.run.id, "eventName": "push", "requestLabels": j.labels,
		"queueTime": j.created.UTC().Format(time.RFC3339)}
	if j.runner != nil {
		it["runnerId"], it["runnerName"] = j.runner.id, j.runner.name
	}
	if kind == "JobCompleted" {
		it["result"] = j.conclusion
		it["finishTime"] = j.completed.UTC().Format(time.RFC3339)
	}
	return it
}

// statsLocked counts a scale set's jobs and runners.
func (s *Server) statsLocked(ss *scaleSet) map[string]int {
	var avail, acq, running, reg, busy int
	for _, j := range s.jobs {
		if j.set != ss {
			continue
		}
		switch {
		case j.status == StatusQueued && j.acquired:
			acq++
		case j.status == StatusQueued:
			avail++
		case j.status == StatusInProgress:
			running++
		}
	}
	for _, rn := range s.runners {
		if rn.set == ss && rn.registered {
			reg++
			if rn.busy {
				busy++
			}
		}
	}
	return map[string]int{"totalAvailableJobs": avail, "totalAcquiredJobs": acq, "totalAssignedJobs": acq + running,
		"totalRunningJobs": running, "totalRegisteredRunners": reg, "totalBusyRunners": busy, "totalIdleRunners": reg - busy}
}

// uuidLike is a random version-4 UUID (the client decodes session ids
// as UUIDs).
func uuidLike() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
