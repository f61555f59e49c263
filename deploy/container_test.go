package deploy_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/testutil/dockertest"
)

func TestMain(m *testing.M) { os.Exit(dockertest.Main(m)) }

// TestContainerImage builds deploy/container/Dockerfile with the real
// engine (the static binary built first, as docs/packages.md says), runs it
// with host networking on a free 127.0.0.1 port and a mounted config, waits
// for /healthz 200 and checks that it runs as a non-root user.
func TestContainerImage(t *testing.T) {
	host := dockertest.Socket(t)
	ctx := t.TempDir()
	df, err := os.ReadFile("container/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), df, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(ctx, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	keep, err := os.ReadFile("container/data/README")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctx, "data", "README"), keep, 0o644); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(ctx, "corral"), "../cmd/corral")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	docker := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("docker", append([]string{"-H", host}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	image := fmt.Sprintf("corral-pkgtest:%d", time.Now().UnixNano())
	docker("build", "-q", "-t", image, ctx)
	t.Cleanup(func() { exec.Command("docker", "-H", host, "rmi", "-f", image).Run() })

	if user := docker("image", "inspect", "-f", "{{.Config.User}}", image); user == "" || strings.HasPrefix(user, "0") || strings.HasPrefix(user, "root") {
		t.Fatalf("image user %q, want a non-root numeric user", user)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	confDir := t.TempDir()
	conf := fmt.Sprintf("listen: %s\ndata_dir: /var/lib/corral\n", addr)
	if err := os.WriteFile(filepath.Join(confDir, "corral.yaml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(confDir, 0o755)
	id := docker("run", "-d", "--network", "host", "-v", confDir+":/etc/corral:ro", image)
	t.Cleanup(func() { exec.Command("docker", "-H", host, "rm", "-f", id).Run() })

	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			logs, _ := exec.Command("docker", "-H", host, "logs", id).CombinedOutput()
			t.Fatalf("no /healthz 200 on %s within 60s (last: %v)\n%s", addr, err, logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if uid := docker("exec", id, "/usr/local/bin/corral", "version"); uid == "" {
		t.Fatal("corral version printed nothing in the container")
	}
	pid := docker("inspect", "-f", "{{.State.Pid}}", id)
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	uid := ""
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Uid:" {
			uid = f[1]
		}
	}
	if uid != "65532" {
		t.Fatalf("container process %s runs as uid %q, want 65532", pid, uid)
	}
}
