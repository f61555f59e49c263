package doctor

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github"
	"github.com/corral-ci/corral/internal/forge/github/standin"
)

func ghStandin(t *testing.T) (*standin.Server, string) {
	t.Helper()
	s := standin.New(standin.Options{})
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	s.AddRepo("acme", "app")
	return s, ts.URL
}

func find(rs []Result, check string) Result {
	for _, r := range rs {
		if r.Check == check {
			return r
		}
	}
	return Result{}
}

func ctx10(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestTarget_GitHubToken: the scope and webhook cases the e2e test does
// not show, on the stand-in.
func TestTarget_GitHubToken(t *testing.T) {
	s, url := ghStandin(t)
	tgt := corral.Target{ID: "acme", Kind: corral.KindGitHub, Scope: corral.ScopeOrg, Path: "acme", URL: url}

	t.Run("no hook scope: webhook not checked, said so", func(t *testing.T) {
		s.AddPAT("ghp_noHookScope000000000000000000000000", "admin:org")
		tgt.Token = "ghp_noHookScope000000000000000000000000"
		rs := Target(ctx10(t), tgt, ForgeOptions{})
		if r := find(rs, "credentials acme"); r.Status != OK {
			t.Errorf("credentials: %+v", r)
		}
		if r := find(rs, "webhook acme"); r.Status != Warn || !strings.Contains(r.Fix, "admin:org_hook") {
			t.Errorf("webhook: %+v", r)
		}
	})
	t.Run("no webhook to corral", func(t *testing.T) {
		s.AddPAT("ghp_hookScope00000000000000000000000000", "admin:org", "admin:org_hook")
		tgt.Token = "ghp_hookScope00000000000000000000000000"
		s.AddHook("acme", "http://127.0.0.1:9/webhooks/someone-else", "x")
		if r := find(Target(ctx10(t), tgt, ForgeOptions{}), "webhook acme"); r.Status != Fail || !strings.Contains(r.Message, "no webhook") {
			t.Errorf("webhook: %+v", r)
		}
	})
	t.Run("classic token without the runner scope", func(t *testing.T) {
		s.AddPAT("ghp_repoOnly000000000000000000000000000", "repo")
		tgt.Token = "ghp_repoOnly000000000000000000000000000"
		r := find(Target(ctx10(t), tgt, ForgeOptions{}), "credentials acme")
		if r.Status != Fail || !strings.Contains(r.Fix, "admin:org") {
			t.Errorf("credentials: %+v", r)
		}
	})
}

func TestTarget_GitHubApp(t *testing.T) {
	s, url := ghStandin(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s.AddApp(77, &key.PublicKey, "", "")
	s.Install(77, 4242, "acme")
	pemOf := func(k *rsa.PrivateKey) corral.Secret {
		return corral.Secret(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
	}
	tgt := corral.Target{ID: "app", Kind: corral.KindGitHub, Scope: corral.ScopeOrg, Path: "acme", URL: url,
		Token: pemOf(key), Settings: map[string]string{github.SettingAppID: "77"}}
	if r := find(Target(ctx10(t), tgt, ForgeOptions{}), "credentials app"); r.Status != OK {
		t.Errorf("good App: %+v", r)
	}
	tgt.Token = pemOf(other)
	rs := Target(ctx10(t), tgt, ForgeOptions{})
	if r := find(rs, "credentials app"); r.Status != Fail {
		t.Errorf("App key GitHub does not know: %+v", r)
	}
	for _, r := range rs {
		if strings.Contains(r.Message+r.Fix, "PRIVATE KEY") {
			t.Errorf("a result shows the key: %+v", r)
		}
	}
	if r := find(rs, "clock app"); r.Status != OK {
		t.Errorf("clock: %+v", r)
	}
}

// TestTarget_GitHubScaleSet: a scale-set target needs no webhook (no
// webhook check), and doctor says when the GHES release drops a scale
// set's extra labels (before 3.18).
func TestTarget_GitHubScaleSet(t *testing.T) {
	for _, c := range []struct {
		ghes   string
		status Status
		want   string
	}{
		{"", OK, "no webhook needed"},
		{"3.17", Warn, "dropped silently before 3.18"},
		{"3.18", OK, "multi-label scale sets kept"},
	} {
		t.Run("ghes "+c.ghes, func(t *testing.T) {
			s := standin.New(standin.Options{GHESVersion: c.ghes})
			ts := httptest.NewServer(s)
			t.Cleanup(func() { ts.Close(); s.Close() })
			s.AddRepo("acme", "app")
			s.AddPAT("ghp_scaleSet000000000000000000000000000", "admin:org")
			u := ts.URL
			if c.ghes != "" {
				u += "/api/v3"
			}
			tgt := corral.Target{ID: "acme", Kind: corral.KindGitHub, Scope: corral.ScopeOrg, Path: "acme", URL: u,
				Token: "ghp_scaleSet000000000000000000000000000", Mode: corral.ModeScaleSet}
			rs := Target(ctx10(t), tgt, ForgeOptions{})
			if r := find(rs, "scaleset acme"); r.Status != c.status || !strings.Contains(r.Message, c.want) {
				t.Errorf("scaleset: %+v; want %v with %q", r, c.status, c.want)
			}
			if r := find(rs, "webhook acme"); r.Check != "" {
				t.Errorf("a scale-set target's webhook was checked: %+v", r)
			}
		})
	}
}
