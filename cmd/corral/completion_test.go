package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func completionScript(t *testing.T, shell string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"completion", shell}, &out, &errb); err != nil {
		t.Fatalf("corral completion %s: %v\n%s", shell, err, errb.String())
	}
	return out.String()
}

// TestCompletion_EveryCommand: every command of the table (and its words)
// is in each shell's script, with its flags read from its own flag set;
// hidden commands are not.
func TestCompletion_EveryCommand(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		s := completionScript(t, shell)
		n := 0
		for _, c := range commands() {
			for _, name := range c.names {
				if strings.HasPrefix(name, "-") {
					continue
				}
				if c.hidden {
					if strings.Contains(s, name) {
						t.Errorf("%s: hidden command %q is completed", shell, name)
					}
					continue
				}
				n++
				if !strings.Contains(s, name) {
					t.Errorf("%s: command %q missing", shell, name)
				}
				for _, sub := range c.subs {
					for _, w := range strings.Fields(sub) {
						if !strings.Contains(s, w) {
							t.Errorf("%s: %s's word %q missing", shell, name, w)
						}
					}
				}
			}
		}
		if n < 15 {
			t.Fatalf("%s: only %d commands in the table", shell, n)
		}
		// Flags come from the commands' flag sets, not a copy.
		for _, f := range []string{"config", "exit-when-done", "webhook-url", "group-by", "watch", "expires"} {
			if !strings.Contains(s, "-"+f) && !strings.Contains(s, "-o "+f) {
				t.Errorf("%s: flag -%s missing", shell, f)
			}
		}
	}
	var errb bytes.Buffer
	if err := run(context.Background(), []string{"completion", "tcsh"}, &bytes.Buffer{}, &errb); err == nil || !strings.Contains(errb.String(), "tcsh") {
		t.Errorf("unknown shell accepted: %v %s", err, errb.String())
	}
}

// TestCompletion_Bash: bash -n accepts the script, and bash itself,
// sourcing it and calling the function as completion does, offers the
// commands, a command's words and its flags.
func TestCompletion_Bash(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	s := completionScript(t, "bash")
	path := filepath.Join(t.TempDir(), "corral.bash")
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bash", "-n", path).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	complete := func(words ...string) string {
		t.Helper()
		script := `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _corral; printf '%s\n' "${COMPREPLY[@]}"`
		out, err := exec.Command("bash", append([]string{"-c", script, "bash", path}, words...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("complete %q: %v\n%s", words, err, out)
		}
		return strings.Join(strings.Fields(string(out)), " ")
	}
	for _, tc := range []struct {
		words []string
		want  string
	}{
		{[]string{"corral", "to"}, "token tokens"},
		{[]string{"corral", "te"}, "tenants"},
		{[]string{"corral", "comp"}, "completion"},
		{[]string{"corral", "token", ""}, "create list revoke"},
		{[]string{"corral", "token", "create", "-ex"}, "-expires"},
		{[]string{"corral", "serve", "-c"}, "-check -config"},
		{[]string{"corral", "github", "app", ""}, "create"},
		{[]string{"corral", "pools", "d"}, "drain"},
		{[]string{"corral", "completion", ""}, "bash zsh fish"},
	} {
		if got := complete(tc.words...); got != tc.want {
			t.Errorf("complete %q = %q, want %q", tc.words, got, tc.want)
		}
	}
}

// TestCompletion_ZshFishSyntax checks the zsh and fish scripts' syntax
// when those shells are installed (zsh -n, fish -n).
func TestCompletion_ZshFishSyntax(t *testing.T) {
	for _, shell := range []string{"zsh", "fish"} {
		if _, err := exec.LookPath(shell); err != nil {
			t.Logf("%s not installed: its script's syntax is not checked", shell)
			continue
		}
		path := filepath.Join(t.TempDir(), "corral."+shell)
		if err := os.WriteFile(path, []byte(completionScript(t, shell)), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(shell, "-n", path).CombinedOutput(); err != nil {
			t.Errorf("%s -n: %v\n%s", shell, err, out)
		}
	}
}
