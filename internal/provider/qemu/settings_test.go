package qemu

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider"
)

// Bad settings and pool options are refused with every problem named by
// its key.
func TestSettings_Validate(t *testing.T) {
	s, err := provider.DecodeSettings(TypeName, json.RawMessage(`{"dir":"rel/dir","machine":"pc","accel":"hvf","runner":"bin/r",
		"forwards":[{"host":"127.0.0.1"},{"host":"127.0.0.1:80","guest":"x:99999"}]}`))
	if err == nil {
		t.Fatalf("DecodeSettings accepted bad settings: %+v", s)
	}
	for _, want := range []string{"dir: want an absolute path", "machine: want microvm or q35", "accel: want auto, kvm or tcg",
		"runner: want an absolute path", "forwards[0].host", "forwards[1].guest"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := provider.DecodeSettings(TypeName, json.RawMessage(`{"forwards":[{"host":"127.0.0.1:3000","guest":"forge.test:80"}]}`)); err != nil {
		t.Errorf("good settings refused: %v", err)
	}
	if _, err := provider.DecodeSettings(TypeName, json.RawMessage(`{"machin":"q35"}`)); err == nil || !strings.Contains(err.Error(), "machin") {
		t.Errorf("an unknown key: err %v, want it named", err)
	}
	o := &Options{Workspace: "ramdisk"}
	if err := o.Validate(nil); err == nil || !strings.Contains(err.Error(), `workspace "ramdisk"`) {
		t.Errorf("bad workspace: err %v", err)
	}
}

// Create refuses bad specs before anything is written: pool options,
// an image that is no guest, an instance id that is not a plain name.
func TestCreate_RefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	p, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	spec := corral.InstanceSpec{InstanceID: "i1", ControllerID: "c", Image: t.TempDir(),
		Bootstrap: corral.Bootstrap{Command: []string{"x"}}}
	for name, c := range map[string]struct {
		mod  func(*corral.InstanceSpec)
		want string
		is   error
	}{
		"options":  {func(s *corral.InstanceSpec) { s.Options = json.RawMessage(`{"workspace":"disk"}`) }, `workspace "disk"`, corral.ErrBadInput},
		"unknown":  {func(s *corral.InstanceSpec) { s.Options = json.RawMessage(`{"docker_in_docker":true}`) }, "docker_in_docker", corral.ErrBadInput},
		"no guest": {func(*corral.InstanceSpec) {}, "no guest there", corral.ErrNotFound},
		"relative": {func(s *corral.InstanceSpec) { s.Image = "guest" }, "absolute path of a guest directory", corral.ErrBadInput},
		"id":       {func(s *corral.InstanceSpec) { s.InstanceID = "../x" }, "not a plain name", corral.ErrBadInput},
	} {
		t.Run(name, func(t *testing.T) {
			sp := spec
			c.mod(&sp)
			_, err := p.Create(t.Context(), sp)
			if err == nil || !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Create: %v, want %v naming %q", err, c.is, c.want)
			}
		})
	}
	if ents, _ := readDirNames(dir); len(ents) > 0 {
		t.Errorf("refused creates left %v", ents)
	}
}

func readDirNames(dir string) ([]string, error) { return mustReadDir(dir), nil }

// A runner is packed once per version; a changed runner gets a new tar,
// and tars unused for a day are pruned.
func TestRunnerTar_CachedAndPruned(t *testing.T) {
	dir := t.TempDir()
	p, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "runner")
	if err := os.WriteFile(src, []byte("#!/bin/sh\necho one\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a, err := p.runnerTar(src)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := p.runnerTar(src); again != a {
		t.Errorf("the same runner packed twice: %s, %s", a, again)
	}
	if fi, _ := os.Stat(a); fi.Size()%512 != 0 {
		t.Errorf("tar of %d bytes: not whole sectors", fi.Size())
	}
	old := time.Now().Add(-2 * runnerKeep)
	if err := os.Chtimes(a, old, old); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, []byte("#!/bin/sh\necho two, longer\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := p.runnerTar(src)
	if err != nil || b == a {
		t.Fatalf("changed runner: %s (%v), want a new tar", b, err)
	}
	if _, err := os.Stat(a); !os.IsNotExist(err) {
		t.Errorf("the old tar unused for 2 days was not pruned: %v", err)
	}
}
