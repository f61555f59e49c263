package docker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
)

// sshDialer returns a dialer that reaches the engine of an ssh:// endpoint
// through `ssh [-p port] [user@]host -- docker system dial-stdio`, whose
// stdin and stdout carry the connection.
func sshDialer(sshCmd []string, u *url.URL, log *slog.Logger) func(ctx context.Context, network, addr string) (net.Conn, error) {
	args := slices.Clone(sshCmd[1:])
	if u.Port() != "" {
		args = append(args, "-p", u.Port())
	}
	target := u.Hostname()
	if u.User != nil && u.User.Username() != "" {
		target = u.User.Username() + "@" + target
	}
	args = append(args, "--", target, "docker", "system", "dial-stdio")
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// Not CommandContext: the connection outlives the dial's context.
		cmd := exec.Command(sshCmd[0], args...)
		cmd.Stderr = logWriter{log}
		in, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start %s: %w", sshCmd[0], err)
		}
		c := &cmdConn{cmd: cmd, in: in, out: out, done: make(chan struct{})}
		go func() { _ = cmd.Wait(); close(c.done) }()
		return c, nil
	}
}

// cmdConn is a net.Conn over a command's stdin and stdout. It ignores
// deadlines (the HTTP client cancels through contexts).
type cmdConn struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  io.ReadCloser
	done chan struct{}
	once sync.Once
}

func (c *cmdConn) Read(b []byte) (int, error)  { return c.out.Read(b) }
func (c *cmdConn) Write(b []byte) (int, error) { return c.in.Write(b) }

// CloseWrite ends the command's stdin, as a half-close; attach uses it.
func (c *cmdConn) CloseWrite() error { return c.in.Close() }

// Close ends the command: stdin closed, then killed if it lingers.
func (c *cmdConn) Close() error {
	c.once.Do(func() {
		_ = c.in.Close()
		select {
		case <-c.done:
		case <-time.After(time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	})
	return nil
}

func (c *cmdConn) LocalAddr() net.Addr  { return sshAddr{} }
func (c *cmdConn) RemoteAddr() net.Addr { return sshAddr{} }

// Deadlines are accepted and ignored.
func (c *cmdConn) SetDeadline(time.Time) error      { return nil }
func (c *cmdConn) SetReadDeadline(time.Time) error  { return nil }
func (c *cmdConn) SetWriteDeadline(time.Time) error { return nil }

// logWriter logs what ssh prints on stderr (host key and auth problems).
type logWriter struct{ log *slog.Logger }

func (w logWriter) Write(b []byte) (int, error) {
	w.log.Warn("ssh", "stderr", strings.TrimSpace(string(b)))
	return len(b), nil
}

type sshAddr struct{}

func (sshAddr) Network() string { return "ssh" }
func (sshAddr) String() string  { return "ssh" }
