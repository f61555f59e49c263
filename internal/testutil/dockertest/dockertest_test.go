package dockertest

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestSocket_Answers(t *testing.T) {
	c, err := client.New(client.WithHost(Socket(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx, client.PingOptions{}); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if Socket(t) != Socket(t) {
		t.Errorf("Socket started a second daemon")
	}
}

func TestImage_BuildsAndCaches(t *testing.T) {
	f := filepath.Join(t.TempDir(), "hello.sh")
	if err := os.WriteFile(f, []byte("#!/bin/sh\necho hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := Image(t, "corral-dockertest", map[string]string{"usr/local/bin/hello": f})
	b := Image(t, "corral-dockertest", map[string]string{"usr/local/bin/hello": f})
	if a != b {
		t.Errorf("same content gave images %s and %s", a, b)
	}
	if err := os.WriteFile(f, []byte("#!/bin/sh\necho bye\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if c := Image(t, "corral-dockertest", map[string]string{"usr/local/bin/hello": f}); c == a {
		t.Errorf("other content gave the same image %s", c)
	}
}

func TestNewDaemon_StopsByPid(t *testing.T) {
	d := NewDaemon(t)
	pid := d.Pid()
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
		if b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat")); len(b) > 0 {
			t.Errorf("dockerd %d still alive after Stop: %s", pid, b)
		}
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err != nil || strings.Contains(string(b), filepath.Dir(d.DataRoot())) {
		t.Errorf("mounts of the daemon left after Stop (%v):\n%s", err, b)
	}
	if _, err := os.Stat(d.DataRoot()); !os.IsNotExist(err) {
		t.Errorf("data root %s left after Stop: %v", d.DataRoot(), err)
	}
}
