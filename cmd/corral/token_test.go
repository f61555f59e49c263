package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-ci/corral/internal/auth"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/store/sqlite"
)

func runSplit(args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), err
}

func TestRun_Token(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, "data_dir: "+dir+"\n"+routeConfig)
	secret, note, err := runSplit("token", "create", "-config", cfg, "--admin", "--name", "first")
	secret = strings.TrimSpace(secret)
	if err != nil || !strings.HasPrefix(secret, auth.SecretPrefix) || strings.Contains(secret, "\n") || !strings.Contains(note, "shown this once") {
		t.Fatalf("create admin: %v\nstdout %q\nstderr %q", err, secret, note)
	}
	read, _, err := runSplit("token", "create", "-config", cfg, "-scope", "tenant-read", "-tenant", "default", "-expires", "30d", "-name", "ci")
	if err != nil {
		t.Fatalf("create tenant-read: %v", err)
	}
	for _, bad := range [][]string{
		{"-scope", "tenant-read"},                     // no tenant
		{"-scope", "root"},                            // no such scope
		{"-admin", "-tenant", "default"},              // admin has no tenant
		{"-scope", "tenant-admin", "-tenant", "nope"}, // unknown tenant
		{"-admin", "-expires", "soon"},                // bad expiry
		{},                                            // no scope
	} {
		out, errOut, err := runSplit(append([]string{"token", "create", "-config", cfg}, bad...)...)
		if err == nil || out != "" {
			t.Errorf("create %v: err %v, stdout %q, stderr %q", bad, err, out, errOut)
		}
	}
	// The store has the hashes, never the secrets.
	b, err := os.ReadFile(filepath.Join(dir, "corral.db"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(secret)) || bytes.Contains(b, []byte(strings.TrimSpace(read))) {
		t.Fatal("the database file holds a token secret")
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "corral.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var tk corral.Token
	err = st.View(context.Background(), func(tx corral.ReadTx) error {
		tk, err = tx.TokenByHash(context.Background(), auth.Hash(secret))
		return err
	})
	st.Close()
	if err != nil || tk.Scope != corral.ScopeAdmin || tk.Name != "first" {
		t.Fatalf("stored token %+v %v", tk, err)
	}
	out, _, err := runSplit("token", "list", "-config", cfg)
	if err != nil || strings.Count(out, "\n") != 3 || !strings.Contains(out, tk.ID) || !strings.Contains(out, "tenant-read  default") || strings.Contains(out, secret) {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if out, _, err := runSplit("token", "revoke", tk.ID, "-config", cfg); err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: %v %s", err, out)
	}
	if _, _, err := runSplit("token", "revoke", "-config", cfg, "tok_nope"); err == nil || !strings.Contains(err.Error(), `no token "tok_nope"`) {
		t.Fatalf("revoke unknown: %v", err)
	}
	out, _, err = runSplit("token", "list", "-config", cfg, "-o", "json")
	var list struct {
		Tokens []struct {
			ID        string `json:"id"`
			RevokedAt string `json:"revoked_at"`
			ExpiresAt string `json:"expires_at"`
		} `json:"tokens"`
	}
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list.Tokens) != 2 {
		t.Fatalf("list json: %v\n%s", err, out)
	}
	for _, v := range list.Tokens {
		if (v.ID == tk.ID) != (v.RevokedAt != "") || (v.ID == tk.ID) == (v.ExpiresAt != "") {
			t.Errorf("token %+v: revoked/expiry wrong", v)
		}
	}
}
