package standin

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ssClient speaks the scale-set protocol as GitHub's Go client does:
// registration token, admin exchange, Actions service calls with
// api-version, message queue with the queue token.
type ssClient struct {
	t                  *testing.T
	base, svc, admin   string
	queueURL, queueTok string
	setID              int64
	sessionID          string
}

func (c *ssClient) do(method, u, auth string, body any, want int, out any) int {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if want != 0 && resp.StatusCode != want {
		c.t.Fatalf("%s %s: %d %s, want %d", method, u, resp.StatusCode, b, want)
	}
	if out != nil && len(b) > 0 && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %v in %s", method, u, err, b)
		}
	}
	return resp.StatusCode
}

func (c *ssClient) svcURL(path string) string {
	u := c.svc + path
	if strings.Contains(u, "?") {
		return u + "&api-version=6.0-preview"
	}
	return u + "?api-version=6.0-preview"
}

func (c *ssClient) connect() {
	var rt struct{ Token string }
	c.do("POST", c.base+"/repos/acme/app/actions/runners/registration-token", "token "+adminPAT, nil, 201, &rt)
	var conn struct{ URL, Token string }
	c.do("POST", c.base+"/actions/runner-registration", "RemoteAuth "+rt.Token,
		map[string]string{"url": "https://github.com/acme/app", "runner_event": "register"}, 200, &conn)
	parts := strings.Split(conn.Token, ".")
	if len(parts) != 3 {
		c.t.Fatalf("admin token %q is not a JWT", conn.Token)
	}
	claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var cl struct{ Exp int64 }
	if json.Unmarshal(claims, &cl) != nil || time.Unix(cl.Exp, 0).Before(time.Now().Add(30*time.Minute)) {
		c.t.Fatalf("admin token claims %s: want exp about an hour ahead", claims)
	}
	c.svc, c.admin = strings.TrimSuffix(conn.URL, "/"), "Bearer "+conn.Token
}

type ssSessionJSON struct {
	SessionID               string `json:"sessionId"`
	MessageQueueURL         string `json:"messageQueueUrl"`
	MessageQueueAccessToken string `json:"messageQueueAccessToken"`
	Statistics              *struct {
		TotalAssignedJobs int `json:"totalAssignedJobs"`
	} `json:"statistics"`
}

func (c *ssClient) openSession(want int) int {
	var se ssSessionJSON
	code := c.do("POST", c.svcURL("/_apis/runtime/runnerscalesets/"+strconv.FormatInt(c.setID, 10)+"/sessions"), c.admin,
		map[string]string{"ownerName": "corral"}, want, &se)
	if code == 200 {
		if se.Statistics == nil || len(se.SessionID) != 36 {
			c.t.Fatalf("session %+v: want statistics and a UUID", se)
		}
		c.sessionID, c.queueURL, c.queueTok = se.SessionID, se.MessageQueueURL, "Bearer "+se.MessageQueueAccessToken
	}
	return code
}

type ssItem struct {
	MessageType     string   `json:"messageType"`
	RunnerRequestID int64    `json:"runnerRequestId"`
	RepositoryName  string   `json:"repositoryName"`
	OwnerName       string   `json:"ownerName"`
	RequestLabels   []string `json:"requestLabels"`
	RunnerName      string   `json:"runnerName"`
	Result          string   `json:"result"`
}

// next long-polls one message (nil on 202) and acknowledges it.
func (c *ssClient) next(last int64) (int64, []ssItem, int) {
	u := c.queueURL
	if last > 0 {
		u += "?lastMessageId=" + strconv.FormatInt(last, 10)
	}
	var m struct {
		MessageID   int64  `json:"messageId"`
		MessageType string `json:"messageType"`
		Body        string `json:"body"`
	}
	code := c.do("GET", u, c.queueTok, nil, 0, &m)
	if code != 200 {
		return last, nil, code
	}
	if m.MessageType != "RunnerScaleSetJobMessages" {
		c.t.Fatalf("message type %q", m.MessageType)
	}
	var items []ssItem
	if err := json.Unmarshal([]byte(m.Body), &items); err != nil {
		c.t.Fatalf("body %q: %v", m.Body, err)
	}
	c.do("DELETE", c.queueURL+"/"+strconv.FormatInt(m.MessageID, 10), c.queueTok, nil, 204, nil)
	return m.MessageID, items, code
}

// TestScaleSet_Protocol: a scale set registered through the admin
// exchange is offered the job queued for it, acquires it, mints a JIT
// runner that runs exactly that job, and hears it started and completed;
// a second session is refused 409 while the first lives and accepted once
// it expired; a deleted scale set answers 404, its job waits and is
// offered to the scale set registered again.
func TestScaleSet_Protocol(t *testing.T) {
	s, base := newStandin(t, Options{SessionTTL: 300 * time.Millisecond, ScaleSetLongPoll: 200 * time.Millisecond})
	c := &ssClient{t: t, base: base}
	c.connect()
	var groups struct {
		Count int
		Value []struct{ ID int64 }
	}
	c.do("GET", c.svcURL("/_apis/runtime/runnergroups/?groupName=default"), c.admin, nil, 200, &groups)
	if groups.Count != 1 || groups.Value[0].ID != 1 {
		t.Fatalf("runner groups %+v", groups)
	}
	var set struct {
		ID   int64
		Name string
	}
	c.do("POST", c.svcURL("/_apis/runtime/runnerscalesets"), c.admin, map[string]any{"name": "corral-small", "runnerGroupId": 1,
		"labels": []map[string]string{{"name": "corral-small", "type": "System"}}}, 200, &set)
	c.setID = set.ID
	var list struct{ Count int }
	c.do("GET", c.svcURL("/_apis/runtime/runnerscalesets?runnerGroupId=1&name=corral-small"), c.admin, nil, 200, &list)
	if list.Count != 1 {
		t.Fatalf("%d scale sets named corral-small, want 1", list.Count)
	}
	c.openSession(200)
	if _, items, code := c.next(0); code != 202 || items != nil {
		t.Fatalf("empty queue answered %d %v, want 202", code, items)
	}

	jobID := s.QueueJob("acme/app", JobSpec{Labels: []string{"corral-small"}, Duration: 50 * time.Millisecond})
	other := s.QueueJob("acme/app", JobSpec{Labels: []string{"self-hosted", "gpu"}}) // not the scale set's
	last, items, _ := c.next(0)
	if len(items) != 1 || items[0].MessageType != "JobAvailable" || items[0].RepositoryName != "app" || items[0].OwnerName != "acme" {
		t.Fatalf("items %+v, want one JobAvailable of acme/app", items)
	}
	req := items[0].RunnerRequestID
	var acq struct {
		Count int
		Value []int64
	}
	c.do("POST", c.svcURL("/_apis/runtime/runnerscalesets/"+strconv.FormatInt(c.setID, 10)+"/acquirejobs"), c.queueTok, []int64{req, 424242}, 200, &acq)
	if acq.Count != 1 || acq.Value[0] != req {
		t.Fatalf("acquired %+v, want only %d", acq, req)
	}
	last, items, _ = c.next(last)
	if len(items) != 1 || items[0].MessageType != "JobAssigned" {
		t.Fatalf("items %+v, want JobAssigned", items)
	}
	var jit struct {
		Runner struct {
			ID               int64
			Name             string
			RunnerScaleSetID int64 `json:"runnerScaleSetId"`
		}
		EncodedJITConfig string `json:"encodedJITConfig"`
	}
	c.do("POST", c.svcURL("/_apis/runtime/runnerscalesets/"+strconv.FormatInt(c.setID, 10)+"/generatejitconfig"), c.admin,
		map[string]string{"name": "corral-small-1", "workFolder": "_work"}, 200, &jit)
	if jit.Runner.RunnerScaleSetID != c.setID || jit.EncodedJITConfig == "" {
		t.Fatalf("jit %+v", jit)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := RunRunner(ctx, func(k string) string {
		if k == EnvJITConfig {
			return jit.EncodedJITConfig
		}
		return ""
	}, io.Discard); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]ssItem{}
	for i := 0; i < 5 && len(kinds) < 2; i++ {
		var its []ssItem
		last, its, _ = c.next(last)
		for _, it := range its {
			kinds[it.MessageType] = it
		}
	}
	if kinds["JobStarted"].RunnerName != "corral-small-1" || kinds["JobCompleted"].Result != "success" {
		t.Fatalf("after the run: %+v, want JobStarted on corral-small-1 and JobCompleted success", kinds)
	}
	for _, j := range s.Jobs() {
		switch j.ID {
		case jobID:
			if j.RunnerName != "corral-small-1" || j.Completions != 1 {
				t.Errorf("job %d ran on %q %d times; want once on the scale set's runner", j.ID, j.RunnerName, j.Completions)
			}
		case other:
			if j.Status != StatusQueued {
				t.Errorf("the other job is %s; the scale set's runner took it", j.Status)
			}
		}
	}

	// A crashed listener: its session lives on until SessionTTL.
	if code := c.openSession(0); code != http.StatusConflict {
		t.Fatalf("second session: %d, want 409 while the first lives", code)
	}
	time.Sleep(400 * time.Millisecond)
	c.openSession(200)

	// The scale set is deleted: 404 to the listener; a job queued
	// meanwhile is offered once it is registered again.
	if !s.DeleteScaleSet("repos/acme/app", "corral-small") {
		t.Fatal("DeleteScaleSet found nothing")
	}
	if _, _, code := c.next(last); code != http.StatusNotFound {
		t.Fatalf("poll of a deleted scale set's session: %d, want 404", code)
	}
	c.do("GET", c.svcURL("/_apis/runtime/runnerscalesets/"+strconv.FormatInt(c.setID, 10)), c.admin, nil, 404, nil)
	s.QueueJob("acme/app", JobSpec{Labels: []string{"corral-small"}})
	c.do("POST", c.svcURL("/_apis/runtime/runnerscalesets"), c.admin, map[string]any{"name": "corral-small", "runnerGroupId": 1}, 200, &set)
	c.setID = set.ID
	c.openSession(200)
	if _, items, _ := c.next(0); len(items) != 1 || items[0].MessageType != "JobAvailable" {
		t.Fatalf("after re-registration: %+v, want the waiting job offered", items)
	}
	// A replaced queue token is refused 401 (the client refreshes).
	old := c.queueTok
	var se ssSessionJSON
	c.do("PATCH", c.svcURL("/_apis/runtime/runnerscalesets/"+strconv.FormatInt(c.setID, 10)+"/sessions/"+c.sessionID), c.admin, nil, 200, &se)
	c.queueTok = old
	if _, _, code := c.next(0); code != http.StatusUnauthorized {
		t.Fatalf("old queue token: %d, want 401", code)
	}
	c.do("DELETE", c.svcURL("/_apis/runtime/runnerscalesets/"+strconv.FormatInt(c.setID, 10)+"/sessions/"+c.sessionID), c.admin, nil, 204, nil)
}

// Faults.LongPollFailRate fails message polls with 503.
func TestScaleSet_LongPollFaults(t *testing.T) {
	s, base := newStandin(t, Options{ScaleSetLongPoll: 20 * time.Millisecond})
	c := &ssClient{t: t, base: base}
	c.connect()
	var set struct{ ID int64 }
	c.do("POST", c.svcURL("/_apis/runtime/runnerscalesets"), c.admin, map[string]any{"name": "x", "runnerGroupId": 1}, 200, &set)
	c.setID = set.ID
	c.openSession(200)
	s.SetFaults(Faults{LongPollFailRate: 0.5})
	failed := 0
	for range 40 {
		if _, _, code := c.next(0); code == http.StatusServiceUnavailable {
			failed++
		} else if code != http.StatusAccepted {
			t.Fatalf("poll answered %d", code)
		}
	}
	if failed < 8 || failed > 32 {
		t.Errorf("%d of 40 polls failed at rate 0.5", failed)
	}
}
