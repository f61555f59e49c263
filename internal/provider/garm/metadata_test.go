package garm

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newMeta(t *testing.T, clock corral.Clock) (*Metadata, string) {
	m, srv := serveMetadata(t, func(base string) *Metadata {
		m, err := NewMetadata(MetadataConfig{BaseURL: base, Store: testStore(t), TTL: time.Minute, Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		return m
	})
	return m, srv.URL
}

// do calls the endpoint as garm's userdata does and returns the status
// and body.
func do(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func tokenSpec(id, token string) corral.InstanceSpec {
	return corral.InstanceSpec{InstanceID: id, Name: "corral-" + id, PoolID: "p", Labels: []string{"self-hosted"},
		Bootstrap: corral.Bootstrap{Command: []string{"sh", "-c", "run"}, Env: map[string]corral.Secret{
			"CORRAL_RUNNER_TOKEN": corral.Secret(token), "CORRAL_FORGE_URL": "http://gitea.test", "CORRAL_RUNNER_NAME": corral.Secret("corral-" + id)},
			Files: map[string]corral.Secret{"config.yaml": "log: {}"}}}
}

// TestMetadata_Tokens: an instance token gives exactly its own instance's
// credential, once; a wrong, missing, API-shaped, expired or revoked token
// is refused, and so is the metadata once the runner reported its setup
// done.
func TestMetadata_Tokens(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m, base := newMeta(t, clock)
	ga, err := m.Grant(tokenSpec("a", "reg-a"))
	if err != nil {
		t.Fatal(err)
	}
	gb, err := m.Grant(tokenSpec("b", "reg-b"))
	if err != nil {
		t.Fatal(err)
	}
	if ga.Token == gb.Token || ga.JIT || ga.RepoURL != "http://gitea.test" || ga.MetadataURL != base+"/api/v1/metadata" || ga.CallbackURL != base+"/api/v1/callbacks" {
		t.Fatalf("grants %+v %+v", ga, gb)
	}
	reg := ga.MetadataURL + "/runner-registration-token/"
	for _, tok := range []string{"", "garbage", TokenPrefix + "0000", "corral_admin_secret", ga.Token + "x"} {
		if code, _ := do(t, "GET", reg, tok, ""); code != http.StatusUnauthorized {
			t.Errorf("token %q: %d, want 401", tok, code)
		}
	}
	if code, body := do(t, "GET", reg, ga.Token, ""); code != 200 || body != "reg-a" {
		t.Errorf("a's token: %d %q, want a's registration token", code, body)
	}
	if code, body := do(t, "GET", reg, ga.Token, ""); code != http.StatusUnauthorized || !strings.Contains(body, "already fetched") {
		t.Errorf("a's token reused: %d %q, want 401 already fetched", code, body)
	}
	// The bootstrap, without the credential, also once.
	code, body := do(t, "GET", ga.MetadataURL+"/corral/bootstrap", ga.Token, "")
	var boot BootstrapAnswer
	if code != 200 || json.Unmarshal([]byte(body), &boot) != nil || boot.InstanceID != "a" || boot.Credential != "token" ||
		boot.CredentialEnv != "CORRAL_RUNNER_TOKEN" || boot.Env["CORRAL_RUNNER_NAME"] != "corral-a" || boot.Files["config.yaml"] != "log: {}" {
		t.Errorf("bootstrap: %d %s", code, body)
	}
	if strings.Contains(body, "reg-a") {
		t.Errorf("bootstrap carries the credential: %s", body)
	}
	if code, _ := do(t, "GET", ga.MetadataURL+"/corral/bootstrap", ga.Token, ""); code != http.StatusUnauthorized {
		t.Errorf("bootstrap fetched twice: %d", code)
	}
	// b's token is b's alone.
	if code, body := do(t, "GET", ga.MetadataURL+"/runner-metadata", gb.Token, ""); code != 200 || !strings.Contains(body, `"runner_name":"corral-b"`) {
		t.Errorf("b's runner-metadata: %d %s", code, body)
	}
	// A status callback of setup done closes the metadata, not the callbacks.
	if code, body := do(t, "POST", gb.CallbackURL+"/status", gb.Token, `{"status":"idle","message":"runner started","agent_id":7}`); code != 200 {
		t.Errorf("status callback: %d %s", code, body)
	}
	if code, _ := do(t, "GET", reg, gb.Token, ""); code != http.StatusUnauthorized {
		t.Errorf("metadata after setup done: %d, want 401", code)
	}
	if code, _ := do(t, "POST", gb.CallbackURL+"/system-info/", gb.Token, `{"os_name":"ubuntu","os_version":"24.04"}`); code != 200 {
		t.Errorf("system-info after setup done: %d", code)
	}
	if code, _ := do(t, "POST", gb.CallbackURL+"/status", gb.Token, `{"status":"exploded"}`); code != http.StatusBadRequest {
		t.Errorf("unknown status: %d, want 400", code)
	}
	ev := m.Events("b")
	if len(ev) != 2 || ev[0].Status != "idle" || ev[0].AgentID == nil || *ev[0].AgentID != 7 || ev[1].Message != "ubuntu 24.04" {
		t.Errorf("events %+v", ev)
	}
	// Revoked (the instance is deleted): refused.
	m.Revoke("b")
	if code, _ := do(t, "POST", gb.CallbackURL+"/status", gb.Token, `{"status":"active"}`); code != http.StatusUnauthorized {
		t.Errorf("revoked token: %d, want 401", code)
	}
	// Expired: refused.
	gc, _ := m.Grant(tokenSpec("c", "reg-c"))
	clock.Add(2 * time.Minute)
	if code, body := do(t, "GET", gc.MetadataURL+"/runner-registration-token", gc.Token, ""); code != http.StatusUnauthorized || !strings.Contains(body, "expired") {
		t.Errorf("expired token: %d %s", code, body)
	}
	// A grant made again for an instance ends the old token.
	gd1, _ := m.Grant(tokenSpec("d", "reg-d"))
	gd2, _ := m.Grant(tokenSpec("d", "reg-d"))
	if code, _ := do(t, "GET", gd1.MetadataURL+"/runner-metadata", gd1.Token, ""); code != http.StatusUnauthorized {
		t.Errorf("replaced token: %d, want 401", code)
	}
	if code, _ := do(t, "GET", gd2.MetadataURL+"/runner-metadata", gd2.Token, ""); code != 200 {
		t.Errorf("new token: %d, want 200", code)
	}
}

// TestMetadata_JIT: a GitHub JIT config is served as garm's credential
// files, each once, and joins back into the same config.
func TestMetadata_JIT(t *testing.T) {
	m, _ := newMeta(t, corral.SystemClock{})
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	outer, _ := json.Marshal(map[string]string{".runner": enc(`{"agentId":5}`), ".credentials": enc(`{"scheme":"OAuth"}`),
		".credentials_rsaparams": enc(`{"d":"x"}`)})
	jit := base64.StdEncoding.EncodeToString(outer)
	sp := corral.InstanceSpec{InstanceID: "j", Name: "corral-j", Bootstrap: corral.Bootstrap{Command: []string{"run.sh"},
		Env: map[string]corral.Secret{"ACTIONS_RUNNER_INPUT_JITCONFIG": corral.Secret(jit)}}}
	g, err := m.Grant(sp)
	if err != nil || !g.JIT {
		t.Fatalf("Grant: %+v %v", g, err)
	}
	files := map[string][]byte{}
	for _, f := range []string{"runner", "credentials", "credentials_rsaparams"} {
		code, body := do(t, "GET", g.MetadataURL+"/credentials/"+f, g.Token, "")
		if code != 200 {
			t.Fatalf("credentials/%s: %d %s", f, code, body)
		}
		files[f] = []byte(body)
	}
	if string(files["runner"]) != `{"agentId":5}` {
		t.Errorf("credentials/runner = %q", files["runner"])
	}
	var back, want map[string]string
	b, _ := base64.StdEncoding.DecodeString(EncodeJIT(files))
	_ = json.Unmarshal(b, &back)
	_ = json.Unmarshal(outer, &want)
	if len(back) != 3 || back[".runner"] != want[".runner"] || back[".credentials_rsaparams"] != want[".credentials_rsaparams"] {
		t.Errorf("joined JIT config %v, want %v", back, want)
	}
	if code, _ := do(t, "GET", g.MetadataURL+"/credentials/runner", g.Token, ""); code != http.StatusUnauthorized {
		t.Errorf("credentials/runner twice: %d, want 401", code)
	}
	// What garm's userdata fetches next for a JIT runner: the service
	// name and a unit file for the user it runs as.
	if code, body := do(t, "GET", g.MetadataURL+"/system/service-name", g.Token, ""); code != 200 || body != "actions.runner.corral-j" {
		t.Errorf("service-name: %d %q", code, body)
	}
	if code, body := do(t, "GET", g.MetadataURL+"/systemd/unit-file?runAsUser=runner", g.Token, ""); code != 200 ||
		!strings.Contains(body, "ExecStart=/home/runner/actions-runner/runsvc.sh\n") || !strings.Contains(body, "User=runner\n") {
		t.Errorf("unit-file: %d %q", code, body)
	}
	if code, _ := do(t, "GET", g.MetadataURL+"/systemd/unit-file?runAsUser=root%0AExecStartPre=/bin/evil", g.Token, ""); code != http.StatusBadRequest {
		t.Errorf("unit-file for a user name with a newline: %d, want 400", code)
	}
	if code, _ := do(t, "GET", g.MetadataURL+"/runner-registration-token/", g.Token, ""); code != http.StatusUnauthorized {
		t.Errorf("registration token of a JIT instance: %d, want 401", code)
	}
	if code, _ := do(t, "GET", g.MetadataURL+"/credentials/../../etc/passwd", g.Token, ""); code == 200 {
		t.Errorf("path outside the credential files: %d", code)
	}
	// A malformed JIT config is refused at the grant, saying what.
	sp.Bootstrap.Env["ACTIONS_RUNNER_INPUT_JITCONFIG"] = "not base64!"
	if _, err := m.Grant(sp); err == nil || !strings.Contains(err.Error(), "JIT config") {
		t.Errorf("Grant of a bad JIT config: %v", err)
	}
}

// TestMetadata_SharedStore: a grant made by one replica (or before a
// restart) is answered by another Metadata on the same store, its single
// use holds across both, and the store keeps neither the token nor the
// credential in the clear.
func TestMetadata_SharedStore(t *testing.T) {
	st := testStore(t)
	mk := func() (*Metadata, string) {
		m, srv := serveMetadata(t, func(base string) *Metadata {
			m, err := NewMetadata(MetadataConfig{BaseURL: base, Store: st})
			if err != nil {
				t.Fatal(err)
			}
			return m
		})
		return m, srv.URL
	}
	one, _ := mk()
	_, base2 := mk()
	g, err := one.Grant(tokenSpec("s", "reg-secret-s"))
	if err != nil {
		t.Fatal(err)
	}
	if code, body := do(t, "GET", base2+"/api/v1/metadata/runner-registration-token", g.Token, ""); code != 200 || body != "reg-secret-s" {
		t.Errorf("the other replica: %d %q", code, body)
	}
	if code, _ := do(t, "GET", g.MetadataURL+"/runner-registration-token", g.Token, ""); code != http.StatusUnauthorized {
		t.Errorf("the first replica after the other gave the token: %d, want 401", code)
	}
	var raw []byte
	if err := st.View(t.Context(), func(tx corral.ReadTx) error {
		h := sha256.Sum256([]byte(g.Token))
		sg, err := tx.InstanceGrant(t.Context(), h[:])
		raw = append(append(raw, sg.Sealed...), []byte(sg.InstanceID)...)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "reg-secret-s") || strings.Contains(string(raw), g.Token) {
		t.Errorf("the store keeps the credential or the token in the clear")
	}
}
