package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/corral-ci/corral/internal/provider/garm"
)

// userdata is the instance's boot script, as garm's cloud-init runs it:
// status callbacks, the credential from the metadata URL with the
// instance token, then the runner. Its exit code is the runner's; 78 when
// the bootstrap failed.
func userdata() int {
	meta, cb, token := os.Getenv(envMetadata), os.Getenv(envCallback), os.Getenv(envToken)
	image, name := os.Getenv(envImage), os.Getenv(envName)
	delay, _ := time.ParseDuration(os.Getenv(envBootDelay))
	for _, k := range []string{envMetadata, envCallback, envToken, envImage, envName, envBootDelay} {
		os.Unsetenv(k) // the runner and its jobs never see them
	}
	time.Sleep(delay)
	c := &client{meta: strings.TrimRight(meta, "/"), cb: strings.TrimRight(cb, "/"), token: token,
		http: &http.Client{Timeout: 10 * time.Second}}
	bootFail := func(format string, a ...any) int {
		msg := fmt.Sprintf(format, a...)
		fmt.Fprintln(os.Stderr, "garmtestprovider userdata:", msg)
		_ = c.status("failed", msg)
		return 78
	}
	_ = c.status("installing", "fetching the runner's bootstrap")
	var md garm.RunnerMetadata
	if err := c.getJSON("runner-metadata", &md); err != nil {
		return bootFail("runner-metadata: %v", err)
	}
	if md.RunnerName != name {
		return bootFail("runner-metadata names runner %q, this instance is %q", md.RunnerName, name)
	}
	var boot garm.BootstrapAnswer
	if err := c.getJSON("corral/bootstrap", &boot); err != nil {
		return bootFail("corral/bootstrap: %v", err)
	}
	env := boot.Env
	env["CORRAL_INSTANCE_ID"] = boot.InstanceID
	switch boot.Credential {
	case "jit":
		files := map[string][]byte{}
		for _, f := range []string{"runner", "credentials", "credentials_rsaparams"} {
			b, status, err := c.get("credentials/" + f)
			if f == "credentials_rsaparams" && status == http.StatusNotFound {
				continue // the stand-in's configs have none
			}
			if err != nil {
				return bootFail("downloading JIT credentials: %v", err)
			}
			files[f] = b
		}
		env[boot.CredentialEnv] = garm.EncodeJIT(files)
	case "token":
		b, _, err := c.get("runner-registration-token/")
		if err != nil {
			return bootFail("runner registration token: %v", err)
		}
		env[boot.CredentialEnv] = string(b)
	}
	if md.JITEnabled != (boot.Credential == "jit") {
		return bootFail("runner-metadata says jit_enabled=%v, the bootstrap's credential is %q", md.JITEnabled, boot.Credential)
	}
	for rel, content := range boot.Files {
		if !filepath.IsLocal(rel) {
			return bootFail("bootstrap file %q is not a local path", rel)
		}
		if err := os.MkdirAll(filepath.Dir(rel), 0o700); err != nil {
			return bootFail("%v", err)
		}
		if err := os.WriteFile(rel, []byte(content), 0o600); err != nil {
			return bootFail("%v", err)
		}
	}
	argv, err := resolve(image, boot.Command)
	if err != nil {
		return bootFail("%v", err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	_ = c.sysinfo()
	if err := cmd.Start(); err != nil {
		return bootFail("start the runner: %v", err)
	}
	_ = c.status("idle", "runner started")
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	var deadline <-chan time.Time
	if !boot.Deadline.IsZero() {
		deadline = time.After(time.Until(boot.Deadline))
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ee.ExitCode() < 0 {
					return 1
				}
				return ee.ExitCode()
			}
			return 0
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		case <-deadline:
			fmt.Fprintln(os.Stderr, "garmtestprovider userdata: the instance's deadline passed: stopping the runner")
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			deadline = nil
			go func() {
				time.Sleep(5 * time.Second)
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			}()
		}
	}
}

// resolve finds the runner program as the process provider does: a
// regular file image runs with the command as its arguments, a directory
// image holds the command's program.
func resolve(image string, command []string) ([]string, error) {
	fi, err := os.Stat(image)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", image, err)
	}
	if fi.IsDir() {
		if len(command) == 0 || !filepath.IsLocal(command[0]) {
			return nil, fmt.Errorf("image %q is a directory and the command names no program inside it", image)
		}
		return append([]string{filepath.Join(image, command[0])}, command[1:]...), nil
	}
	return append([]string{image}, command...), nil
}

type client struct {
	meta, cb, token string
	http            *http.Client
}

func (c *client) get(path string) ([]byte, int, error) {
	req, err := http.NewRequest(http.MethodGet, c.meta+"/"+path, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(b))
	}
	return b, resp.StatusCode, nil
}

func (c *client) getJSON(path string, v any) error {
	b, _, err := c.get(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func (c *client) post(path string, body any) error {
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(http.MethodPost, c.cb+"/"+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s", path, resp.Status)
	}
	return nil
}

func (c *client) status(status, msg string) error {
	return c.post("status", map[string]string{"status": status, "message": msg})
}

func (c *client) sysinfo() error {
	return c.post("system-info/", map[string]any{"os_name": "corral-process", "os_version": "1"})
}
