package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/github/appmanifest"
	"github.com/corral-ci/corral/internal/secretbox"
)

// runGitHub serves `corral github app create`.
func runGitHub(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) < 2 || args[0] != "app" || args[1] != "create" {
		fmt.Fprintln(stderr, "usage: corral github app create -name NAME -webhook-url URL [-org ORG] [-github URL] [-data DIR]")
		return exitError(2)
	}
	fs := newFlagSet("github app create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "the App's name (unique on GitHub)")
	org := fs.String("org", "", "the organization that owns the App (default: your user)")
	web := fs.String("github", "https://github.com", "GitHub's web address (for Enterprise Server: https://HOST)")
	api := fs.String("api", "", "GitHub's API base (default: derived from -github)")
	hook := fs.String("webhook-url", "", "where corral receives webhooks, e.g. https://corral.example.com")
	dataDir := fs.String("data", ".data", "corral's data directory: the App's secrets are sealed here")
	listen := fs.String("listen", "127.0.0.1:0", "the local page's address")
	if err := fs.Parse(args[2:]); err != nil {
		return exitError(2)
	}
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return err
	}
	box, err := secretbox.Open(dir, os.Getenv, true)
	if err != nil {
		return err
	}
	res, err := appmanifest.Run(ctx, appmanifest.Options{WebURL: *web, APIURL: *api, Org: *org, Name: *name,
		WebhookBase: *hook, Listen: *listen}, func(u string) {
		fmt.Fprintf(stdout, "Open %s in a browser signed in to GitHub and confirm the App.\n", u)
	})
	if err != nil {
		return err
	}
	prefix := fmt.Sprintf("github-app-%d", res.ID)
	for suffix, s := range map[string]string{"-key": res.PEM.Reveal(), "-webhook-secret": res.WebhookSecret.Reveal(), "-client-secret": res.ClientSecret.Reveal()} {
		if s == "" {
			continue
		}
		if err := box.Put(prefix+suffix, secretString(s)); err != nil {
			return fmt.Errorf("seal the App's secrets: %w", err)
		}
	}
	apiBase := *api
	if apiBase == "" {
		apiBase = appmanifest.APIFor(*web)
	}
	scope, path := "org", *org
	if path == "" {
		scope, path = "repo", res.Owner+"/REPOSITORY"
	}
	fmt.Fprintf(stdout, `GitHub App %q created (id %d, owner %s); its key and webhook secret are sealed in %s.
Install it on the accounts it should serve (%s/installations/new), then add a target to corral's config:

targets:
  - id: %s
    kind: github
    scope: %s
    path: %s
    url: %s
    webhook_secret: sealed:%s-webhook-secret
    token: sealed:%s-key
    settings: {app_id: "%d", app_hook: "%s"}

GitHub delivers the App's webhooks to %s/webhooks/app/%s
`, res.Name, res.ID, res.Owner, filepath.Join(dir, secretbox.Dir), res.HTMLURL, res.HookName, scope, path, apiBase,
		prefix, prefix, res.ID, res.HookName, *hook, res.HookName)
	return nil
}

// secretString keeps a revealed value typed as a secret again.
func secretString(s string) corral.Secret { return corral.Secret(s) }
