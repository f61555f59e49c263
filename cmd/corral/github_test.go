package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/forge/github/standin"
	"github.com/corral-ci/corral/internal/secretbox"
)

// TestRun_GitHubAppCreate walks the App manifest flow against the stand-in
// GitHub, playing the browser: corral's page submits the manifest, GitHub
// sends the browser back with a code, corral converts it and seals the key.
func TestRun_GitHubAppCreate(t *testing.T) {
	gh := standin.New(standin.Options{Seed: 3})
	ts := httptest.NewServer(gh)
	defer ts.Close()
	defer gh.Close()
	data := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"github", "app", "create", "-name", "Corral CI", "-org", "acme", "-github", ts.URL,
			"-api", ts.URL, "-webhook-url", "https://corral.example.com", "-data", data}, io.MultiWriter(pw, &out), &out)
		pw.Close()
	}()
	// The browser: open the printed page, submit its form, follow GitHub's redirect.
	line := make([]byte, 512)
	n, _ := pr.Read(line)
	pageURL := regexp.MustCompile(`http://127\.0\.0\.1:\d+/`).FindString(string(line[:n]))
	if pageURL == "" {
		t.Fatalf("no page URL in %q", line[:n])
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	resp, err := http.Get(pageURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	action := html.UnescapeString(regexp.MustCompile(`action="([^"]+)"`).FindStringSubmatch(string(page))[1])
	manifest := html.UnescapeString(regexp.MustCompile(`name="manifest" value="([^"]+)"`).FindStringSubmatch(string(page))[1])
	if !strings.HasPrefix(action, ts.URL+"/organizations/acme/settings/apps/new?state=") || !strings.Contains(manifest, `"workflow_job"`) {
		t.Fatalf("form action %q, manifest %s", action, manifest)
	}
	resp, err = http.PostForm(action, url.Values{"manifest": {manifest}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "created") {
		t.Fatalf("callback: %d %s", resp.StatusCode, body)
	}
	if err := <-done; err != nil {
		t.Fatalf("app create: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{"kind: github", "scope: org", "path: acme", "token: sealed:github-app-", "app_hook: \"corral-ci\"",
		"https://corral.example.com/webhooks/app/corral-ci"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "PRIVATE KEY") {
		t.Fatal("the App's key was printed")
	}
	// The sealed key opens and is the App's RSA key; nothing is in clear.
	box, err := secretbox.Open(data, func(string) string { return "" }, false)
	if err != nil {
		t.Fatal(err)
	}
	id := regexp.MustCompile(`sealed:(github-app-\d+)-key`).FindStringSubmatch(text)[1]
	key, err := box.Get(id + "-key")
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(key.Reveal()))
	if blk == nil {
		t.Fatal("sealed key is not PEM")
	}
	if _, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err != nil {
		t.Fatalf("sealed key: %v", err)
	}
	if s, err := box.Get(id + "-webhook-secret"); err != nil || s.Reveal() == "" {
		t.Fatalf("webhook secret: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(data, secretbox.Dir, "*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, []byte("PRIVATE KEY")) {
			t.Fatalf("%s holds the key in clear", f)
		}
	}
}
