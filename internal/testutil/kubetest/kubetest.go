// Package kubetest starts a real Kubernetes control plane for tests: etcd,
// kube-apiserver and kube-scheduler, built from the Go module proxy by
// scripts/k8s/build.sh and cached outside the tree by version. Everything
// listens on 127.0.0.1 free ports and lives in a temporary directory.
//
// No kubelet runs ("tier 1"): pods are stored, watched, scheduled (bound to a
// Node object a test registers through the API) and deleted, but they never
// reach Running. The API server authenticates with static tokens: an admin
// token (group system:masters) for the tests and the scheduler, and a
// "corral" user that has no rights until a test grants them through RBAC.
//
// Without the binaries the tests skip with a message naming the build
// script, except under CI=true, where they fail: CI never skips them.
package kubetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Version is the Kubernetes release the build script builds.
const Version = "1.37.2"

// EnvBinDir names a directory holding kube-apiserver, kube-scheduler and
// etcd; by default the build script's cache directory.
const EnvBinDir = "CORRAL_K8S_BIN_DIR"

// ErrNoBinaries: the control plane's binaries are not built.
var ErrNoBinaries = errors.New("kubetest: no Kubernetes binaries")

// CorralUser is the user name of Cluster.CorralToken.
const CorralUser = "corral"

// BinDir returns where the binaries are expected.
func BinDir() string {
	if d := os.Getenv(EnvBinDir); d != "" {
		return d
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "corral", "k8s-v"+Version)
}

func binaries(scheduler bool) (dir string, err error) {
	dir = BinDir()
	need := []string{"etcd", "kube-apiserver"}
	if scheduler {
		need = append(need, "kube-scheduler")
	}
	for _, b := range need {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%w: %s missing in %s (build them with scripts/k8s/build.sh, ~15 min cold)", ErrNoBinaries, b, dir)
		}
	}
	return dir, nil
}

// Cluster is a running control plane.
type Cluster struct {
	// URL is the API server's https URL; CACert its serving certificate
	// (PEM), self-signed.
	URL    string
	CACert []byte
	// AdminToken belongs to a member of system:masters; CorralToken to the
	// user CorralUser, who has only what RBAC grants.
	AdminToken, CorralToken string
	// Dir holds the cluster's files (kubeconfigs among them).
	Dir string

	procs []*exec.Cmd
	waits []chan error
}

// Options of Start.
type Options struct {
	// NoScheduler: do not start kube-scheduler.
	NoScheduler bool
	// Log receives the components' output; nil: a file in Dir.
	Log io.Writer
	// node: a kubelet will serve pods (StartNode): the API server reaches
	// it at the node's InternalIP and admits privileged pods (a Docker
	// daemon sidecar needs one).
	node bool
}

// Start starts etcd, kube-apiserver and (unless told not to)
// kube-scheduler in dir, and waits until the API server is ready. It
// wraps ErrNoBinaries when they are not built. The caller stops it.
func Start(ctx context.Context, dir string, opt Options) (c *Cluster, err error) {
	bin, err := binaries(!opt.NoScheduler)
	if err != nil {
		return nil, err
	}
	c = &Cluster{Dir: dir, AdminToken: randomHex(16), CorralToken: randomHex(16)}
	started := c
	defer func() {
		if err != nil {
			started.Stop()
		}
	}()
	logw := opt.Log
	if logw == nil {
		f, err := os.Create(filepath.Join(dir, "cluster.log"))
		if err != nil {
			return nil, err
		}
		logw = f
	}
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	etcdClient := "http://127.0.0.1:" + ports[0]
	if err := c.start(bin, "etcd", logw,
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdClient, "--advertise-client-urls", etcdClient,
		"--listen-peer-urls", "http://127.0.0.1:"+ports[1],
		"--initial-advertise-peer-urls", "http://127.0.0.1:"+ports[1],
		"--initial-cluster", "default=http://127.0.0.1:"+ports[1],
		"--unsafe-no-fsync", "--quota-backend-bytes", strconv.Itoa(256<<20),
	); err != nil {
		return nil, err
	}

	saKey := filepath.Join(dir, "sa.key")
	if err := writeKey(saKey); err != nil {
		return nil, err
	}
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(fmt.Sprintf("%s,admin,admin,system:masters\n%s,%s,%s\n",
		c.AdminToken, c.CorralToken, CorralUser, CorralUser)), 0o600); err != nil {
		return nil, err
	}
	certDir := filepath.Join(dir, "certs")
	c.URL = "https://127.0.0.1:" + ports[2]
	if err := c.start(bin, "kube-apiserver", logw,
		"--etcd-servers", etcdClient,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", ports[2],
		"--cert-dir", certDir,
		"--token-auth-file", tokens,
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", "127.96.0.0/24",
		"--endpoint-reconciler-type", "none",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", saKey, "--service-account-signing-key-file", saKey,
		"--allow-privileged="+strconv.FormatBool(opt.node),
		"--kubelet-preferred-address-types", "InternalIP",
	); err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx, certDir); err != nil {
		return nil, err
	}
	kc, err := c.WriteKubeconfig("admin.kubeconfig", c.AdminToken)
	if err != nil {
		return nil, err
	}
	if !opt.NoScheduler {
		if err := c.start(bin, "kube-scheduler", logw,
			"--kubeconfig", kc, "--authentication-kubeconfig", kc, "--authorization-kubeconfig", kc,
			"--bind-address", "127.0.0.1", "--secure-port", ports[3],
			"--leader-elect=false",
		); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *Cluster) start(bin, name string, logw io.Writer, args ...string) error {
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Stdout, cmd.Stderr = prefixed(logw, name), prefixed(logw, name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("kubetest: start %s: %w", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	c.procs = append(c.procs, cmd)
	c.waits = append(c.waits, done)
	return nil
}

// waitReady polls /readyz until it answers 200 (the serving certificate is
// written by the API server itself at start).
func (c *Cluster) waitReady(ctx context.Context, certDir string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute) // seconds when idle; a loaded machine is slower
	defer cancel()
	var last error
	for {
		for i, w := range c.waits {
			select {
			case err := <-w:
				w <- err
				return fmt.Errorf("kubetest: %s exited before the API server was ready: %v (log in %s)", filepath.Base(c.procs[i].Path), err, c.Dir)
			default:
			}
		}
		if c.CACert == nil {
			if b, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt")); err == nil {
				c.CACert = b
			}
		}
		if c.CACert != nil {
			if last = c.readyz(ctx); last == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubetest: API server not ready: %v (last: %v; log in %s)", ctx.Err(), last, c.Dir)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cluster) readyz(ctx context.Context) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CACert)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/readyz", nil)
	req.Header.Set("Authorization", "Bearer "+c.AdminToken)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz: %s: %s", resp.Status, body)
	}
	return nil
}

// WriteKubeconfig writes a kubeconfig file in Dir that reaches the API
// server with the bearer token, and returns its path.
func (c *Cluster) WriteKubeconfig(name, token string) (string, error) {
	p := filepath.Join(c.Dir, name)
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: user
  user:
    token: %s
contexts:
- name: kubetest
  context: {cluster: kubetest, user: user}
current-context: kubetest
`, c.URL, b64(c.CACert), token)
	return p, os.WriteFile(p, []byte(cfg), 0o600)
}

// Stop ends every component (SIGTERM, then SIGKILL after 5 s) and waits
// for them. The directory stays: its owner removes it.
func (c *Cluster) Stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		_ = p.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.waits[i]:
		case <-time.After(5 * time.Second):
			_ = p.Process.Kill()
			<-c.waits[i]
		}
	}
	c.procs, c.waits = nil, nil
}

// Shared is one cluster started on first use and shared by a package's
// tests; its TestMain calls Stop after m.Run.
type Shared struct {
	Options Options
	once    sync.Once
	c       *Cluster
	dir     string
	err     error
}

// Get returns the shared cluster, starting it on first use. Without the
// binaries it skips t, or fails it under CI=true.
func (s *Shared) Get(t testing.TB) *Cluster {
	t.Helper()
	s.once.Do(func() {
		s.dir, s.err = os.MkdirTemp("", "corral-kubetest-")
		if s.err != nil {
			return
		}
		s.c, s.err = Start(context.Background(), s.dir, s.Options)
	})
	if errors.Is(s.err, ErrNoBinaries) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: the Kubernetes tests must not be skipped)", s.err)
		}
		t.Skip(s.err)
	}
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.c
}

// Stop stops the shared cluster, if it started, and removes its files.
func (s *Shared) Stop() {
	if s.c != nil {
		s.c.Stop()
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

func freePorts(n int) ([]string, error) {
	var out []string
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		out = append(out, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	return out, nil
}

func writeKey(path string) error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Pids returns the components' process ids.
func (c *Cluster) Pids() []int {
	out := make([]int, 0, len(c.procs))
	for _, p := range c.procs {
		out = append(out, p.Process.Pid)
	}
	return out
}
