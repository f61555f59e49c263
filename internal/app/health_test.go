package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/app"
	"github.com/corral-ci/corral/internal/component"
	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/store/sqlite"
	"github.com/corral-ci/corral/internal/testutil/fake"
)

func readyz(t *testing.T, a *app.App) (int, component.Readiness) {
	t.Helper()
	code, body := get(t, a.Handler(), "/readyz")
	var rd component.Readiness
	if err := json.Unmarshal([]byte(body), &rd); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	return code, rd
}

func checkOf(rd component.Readiness, name string) component.CheckResult {
	for _, c := range rd.Checks {
		if c.Name == name {
			return c
		}
	}
	return component.CheckResult{}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A store that cannot commit (its disk is full) makes /readyz answer 503
// and say why; once space is freed corral commits again and is ready,
// with no restart. The disk is a real 4 MiB tmpfs (needs root).
func TestApp_ReadyzStoreCannotCommit(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root to mount a small tmpfs")
		}
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "c.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	a, err := app.New(app.Options{Store: st, Forges: fake.NewForge(), Providers: map[string]corral.Provider{"noop": fake.NewProvider()},
		Tenants: []corral.Tenant{{ID: "default"}},
		Targets: []corral.Target{{ID: "acme", TenantID: "default", Kind: corral.KindGitHub, WebhookSecret: secret}},
		Pools: []corral.Pool{{ID: "linux", TenantID: "default", Labels: []string{"corral"}, Provider: "noop",
			Flavor: corral.Flavor{CPU: 2, MemoryMB: 4096, Arch: "x64"}}},
		ControllerID: "test", StoreProbeInterval: 50 * time.Millisecond, LeaseTTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitUntil(t, "ready", func() bool { code, _ := readyz(t, a); return code == 200 })

	// Fill the disk.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			break
		}
	}
	f.Close()
	var rd component.Readiness
	waitUntil(t, "/readyz to report the store", func() bool {
		var code int
		code, rd = readyz(t, a)
		return code == 503 && !checkOf(rd, "store").OK
	})
	if c := checkOf(rd, "store"); !strings.Contains(c.Error, "last write failed") {
		t.Errorf("store check = %+v, want it to say the last write failed", c)
	}
	// Free the space: corral recovers by itself.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			_, rd := readyz(t, a)
			t.Logf("readiness at the end: %+v", rd)
		}
	}()
	// Recovered: every critical check passes again. (Components that
	// failed while the disk was full may keep /readyz at 503 for their
	// minute of "degraded"; they are restarted, not gone.)
	waitUntil(t, "the store and leader checks to pass again", func() bool {
		_, rd := readyz(t, a)
		return checkOf(rd, "store").OK && checkOf(rd, "leader").OK
	})
}

// A component's failure shows in /readyz with its name and error.
func TestApp_ReadyzComponentFailure(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	a, err := app.New(app.Options{Store: st, Forges: fake.NewForge(), Providers: map[string]corral.Provider{"noop": fake.NewProvider()},
		ControllerID: "test", Components: []app.ExtraComponent{{C: component.Func("listener", func(ctx context.Context) error {
			return errors.New("broker timed out")
		})}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	// Other checks (the lead) may fail for a moment at start: wait for the
	// listener's own failure, then check it makes /readyz fail.
	var rd component.Readiness
	var code int
	degraded := func() bool {
		for _, c := range rd.Components {
			if c.Name == "listener" && c.Degraded && c.LastError == "broker timed out" {
				return true
			}
		}
		return false
	}
	waitUntil(t, "the listener's failure in /readyz", func() bool {
		code, rd = readyz(t, a)
		return degraded()
	})
	if code != 503 {
		t.Errorf("/readyz = %d with the listener degraded, want 503: %+v", code, rd)
	}
}
