package gitea

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

// giteaServer is a real Gitea on 127.0.0.1 with SQLite in a temporary
// directory, an admin user and its token.
type giteaServer struct {
	dir, ini, URL string
	admin, token  string
	cmd           *exec.Cmd
	done          chan struct{}
	log           string
}

const adminUser = "corral"

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

const appIni = `APP_NAME = corral-e2e
RUN_MODE = prod
RUN_USER = %[4]s
WORK_PATH = %[1]s
%[5]s

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = %[3]s
ROOT_URL = http://%[2]s/
DOMAIN = 127.0.0.1
DISABLE_SSH = true
START_SSH_SERVER = false
OFFLINE_MODE = true
LFS_START_SERVER = false
APP_DATA_PATH = %[1]s/data

[database]
DB_TYPE = sqlite3
PATH = %[1]s/data/gitea.db
SQLITE_JOURNAL_MODE = WAL

[repository]
ROOT = %[1]s/repos
DEFAULT_BRANCH = main

[security]
INSTALL_LOCK = true
SECRET_KEY = corral-e2e-secret-key-not-for-production
ALLOWED_HOST_LIST = loopback
PASSWORD_HASH_ALGO = pbkdf2_hi

[actions]
ENABLED = true

[queue]
TYPE = channel

[service]
DISABLE_REGISTRATION = true

[mailer]
ENABLED = false

[session]
PROVIDER = memory

[cache]
ADAPTER = memory

[indexer]
ISSUE_INDEXER_TYPE = db

[log]
MODE = file
LEVEL = Info
ROOT_PATH = %[1]s/log
`

// startGitea writes app.ini, migrates, creates the admin and its token and
// starts `gitea web`, waiting for /api/healthz.
func startGitea() (*giteaServer, error) {
	dir, err := os.MkdirTemp("", "corral-gitea-")
	if err != nil {
		return nil, err
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	u, err := user.Current()
	if err != nil {
		return nil, err
	}
	g := &giteaServer{dir: dir, ini: filepath.Join(dir, "app.ini"), URL: "http://" + addr, admin: adminUser,
		done: make(chan struct{}), log: filepath.Join(dir, "gitea.out")}
	if err := os.WriteFile(g.ini, []byte(fmt.Sprintf(appIni, dir, addr, port, u.Username, asRoot())), 0o600); err != nil {
		return nil, err
	}
	if _, err := g.cli("migrate"); err != nil {
		return nil, err
	}
	if _, err := g.cli("admin", "user", "create", "--admin", "--username", adminUser, "--password", "corral-e2e-Passw0rd",
		"--email", "corral@example.invalid", "--must-change-password=false"); err != nil {
		return nil, err
	}
	tok, err := g.cli("admin", "user", "generate-access-token", "--username", adminUser, "--token-name", "corral-e2e",
		"--scopes", "all", "--raw")
	if err != nil {
		return nil, err
	}
	g.token = strings.TrimSpace(tok)
	logf, err := os.Create(g.log)
	if err != nil {
		return nil, err
	}
	g.cmd = exec.Command(giteaBin, "web", "--config", g.ini, "--work-path", dir)
	g.cmd.Dir = dir
	g.cmd.Env = g.env()
	g.cmd.Stdout, g.cmd.Stderr = logf, logf
	// Gitea dies with the test process, whatever happens to it.
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := g.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = g.cmd.Wait(); logf.Close(); close(g.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-g.done:
			return nil, fmt.Errorf("gitea exited during start-up: %s", g.tail())
		default:
		}
		resp, err := http.Get(g.URL + "/api/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return g, nil
			}
		}
		if time.Now().After(deadline) {
			g.stop()
			return nil, fmt.Errorf("gitea did not answer /api/healthz within 60s: %s", g.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// asRoot is the app.ini line that lets Gitea run as root, when it does.
func asRoot() string {
	if os.Geteuid() == 0 {
		return "I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true"
	}
	return ""
}

func (g *giteaServer) env() []string {
	return append(os.Environ(), "GITEA_WORK_DIR="+g.dir, "HOME="+g.dir)
}

// cli runs one gitea command against the configuration.
func (g *giteaServer) cli(args ...string) (string, error) {
	cmd := exec.Command(giteaBin, append([]string{"--config", g.ini, "--work-path", g.dir}, args...)...)
	cmd.Dir, cmd.Env = g.dir, g.env()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("gitea %s: %w: %s", args[0], err, e2etest.LastLines(errb.String()+out.String(), 15))
	}
	return out.String(), nil
}

// stop ends Gitea by its pid (SIGTERM, then SIGKILL) and removes its data.
func (g *giteaServer) stop() {
	if g.cmd != nil && g.cmd.Process != nil {
		_ = g.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.done:
		case <-time.After(10 * time.Second):
			_ = g.cmd.Process.Kill()
			<-g.done
		}
	}
	if os.Getenv("CORRAL_GITEA_KEEP") == "" {
		_ = os.RemoveAll(g.dir)
	}
}

func (g *giteaServer) tail() string {
	b, _ := os.ReadFile(g.log)
	l, _ := os.ReadFile(filepath.Join(g.dir, "log", "gitea.log"))
	return e2etest.LastLines(string(b)+string(l), 30)
}

// apiError is a Gitea answer with an unexpected status.
type apiError struct {
	Method, Path string
	Status       int
	Body         string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s %s: status %d: %s", e.Method, e.Path, e.Status, e.Body)
}

// call sends one API request as the admin and decodes a JSON answer.
func (g *giteaServer) call(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, g.URL+"/api/v1"+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "token "+g.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return &apiError{Method: method, Path: path, Status: resp.StatusCode, Body: string(b)}
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// createRepo makes admin/name with an initial commit on main.
func (g *giteaServer) createRepo(name string) (string, error) {
	err := g.call(http.MethodPost, "/user/repos", map[string]any{"name": name, "auto_init": true, "default_branch": "main"}, nil)
	return g.admin + "/" + name, err
}

// addHook points a workflow_job webhook of repo at url, signed with secret.
func (g *giteaServer) addHook(repo, url, secret string) error {
	return g.call(http.MethodPost, "/repos/"+repo+"/hooks", map[string]any{
		"type": "gitea", "active": true, "events": []string{"workflow_job"},
		"config": map[string]string{"url": url, "content_type": "json", "secret": secret},
	}, nil)
}

// hooks lists the URLs of repo's webhooks.
func (g *giteaServer) hooks(repo string) ([]string, error) {
	var hs []struct {
		Config map[string]string `json:"config"`
	}
	if err := g.call(http.MethodGet, "/repos/"+repo+"/hooks", nil, &hs); err != nil {
		return nil, err
	}
	var out []string
	for _, h := range hs {
		out = append(out, h.Config["url"])
	}
	return out, nil
}

// pushWorkflow commits .gitea/workflows/<name> through the contents API,
// which starts a run.
func (g *giteaServer) pushWorkflow(repo, name, content string) error {
	return g.call(http.MethodPost, "/repos/"+repo+"/contents/.gitea/workflows/"+name, map[string]any{
		"content": base64.StdEncoding.EncodeToString([]byte(content)), "message": "add " + name, "branch": "main",
	}, nil)
}

// job is Gitea's view of a job.
type job struct {
	ID         int64    `json:"id"`
	Name       string   `json:"name"`
	Labels     []string `json:"labels"`
	Status     string   `json:"status"`
	Conclusion string   `json:"conclusion"`
	RunnerID   int64    `json:"runner_id"`
	RunnerName string   `json:"runner_name"`
}

// jobs lists every job of repo (all statuses).
func (g *giteaServer) jobs(repo string) ([]job, error) {
	var all []job
	for page := 1; page < 100; page++ {
		var out struct {
			Jobs []job `json:"jobs"`
		}
		if err := g.call(http.MethodGet, fmt.Sprintf("/repos/%s/actions/jobs?limit=50&page=%d", repo, page), nil, &out); err != nil {
			return nil, err
		}
		all = append(all, out.Jobs...)
		if len(out.Jobs) < 50 {
			return all, nil
		}
	}
	return nil, errors.New("too many pages")
}

// runners lists the runners registered at repo.
func (g *giteaServer) runners(repo string) ([]string, error) {
	var out struct {
		Runners []struct {
			Name string `json:"name"`
		} `json:"runners"`
	}
	if err := g.call(http.MethodGet, "/repos/"+repo+"/actions/runners?limit=50", nil, &out); err != nil {
		return nil, err
	}
	var names []string
	for _, r := range out.Runners {
		names = append(names, r.Name)
	}
	return names, nil
}

// jobLog returns the log Gitea keeps of a job (its steps' output), or the
// error reading it.
func (g *giteaServer) jobLog(repo string, id int64) string {
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/api/v1/repos/%s/actions/jobs/%d/logs", g.URL, repo, id), nil)
	if err != nil {
		return err.Error()
	}
	req.Header.Set("Authorization", "token "+g.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Sprintf("%s: %s", resp.Status, b)
	}
	return string(b)
}
