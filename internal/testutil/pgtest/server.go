// Package pgtest gives tests a fresh PostgreSQL database.
//
// The server is either the one named by the environment variable
// CORRAL_TEST_POSTGRES_DSN (an admin DSN to a running server, e.g. started by
// .ci/run) or one throwaway server per test process, started from the
// PostgreSQL 15 binaries in a temporary directory on a free 127.0.0.1 port.
// Call Main from TestMain so that throwaway server is stopped when the tests
// end.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// BinDir is where StartServer looks for initdb and postgres.
const BinDir = "/usr/lib/postgresql/15/bin"

// ErrNoPostgres: the PostgreSQL binaries are not installed.
var ErrNoPostgres = errors.New("pgtest: PostgreSQL binaries not found in " + BinDir)

// Server is a throwaway PostgreSQL server: trust authentication, fsync off
// (on with StartDurableServer), listening on 127.0.0.1 only. It is for
// tests and benchmarks, never for data that matters.
type Server struct {
	dir     string
	port    int
	durable bool // fsync, synchronous_commit and full_page_writes on
	cmd     *exec.Cmd
	cred    *syscall.Credential // nil when not root
	exit    chan struct{}       // closed when the postgres process has ended
	werr    error               // Wait's error, valid after exit is closed

	stopOnce sync.Once
	stopErr  error
}

// StartServer initializes a cluster in dir (which must exist, be empty or
// absent, and, when running as root, be reachable by the user "nobody":
// postgres refuses to run as root, so the cluster then runs as nobody) and
// starts a server on a free port. It returns when the server accepts
// connections. Stop it with Stop.
func StartServer(dir string) (*Server, error) { return startServer(dir, false) }

// StartDurableServer is StartServer with PostgreSQL's durability settings
// at their defaults (fsync, synchronous_commit and full_page_writes on):
// every commit waits for its WAL to reach the disk, as in production. For
// benchmarks whose figures must not be flattered by fsync=off.
func StartDurableServer(dir string) (*Server, error) { return startServer(dir, true) }

func startServer(dir string, durable bool) (*Server, error) {
	initdb := filepath.Join(BinDir, "initdb")
	if _, err := os.Stat(initdb); err != nil {
		return nil, ErrNoPostgres
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	s := &Server{dir: dir, durable: durable, exit: make(chan struct{})}
	if os.Geteuid() == 0 {
		cred, err := nobody()
		if err != nil {
			return nil, err
		}
		s.cred = cred
		if err := chownTree(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("pgtest: chown %s: %w", dir, err)
		}
	}
	data := filepath.Join(dir, "data")
	out, err := s.command(initdb, "-D", data, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	// A free port can be taken by someone else before postgres binds it:
	// try a few.
	for attempt := 0; ; attempt++ {
		exited, err := s.start(data)
		if err == nil {
			return s, nil
		}
		if !exited || attempt == 2 {
			return nil, err
		}
	}
}

// start starts postgres on a free port and waits until it accepts
// connections. exited reports that postgres ended by itself (say, because
// the port was taken meanwhile), so that a retry may help.
func (s *Server) start(data string) (exited bool, err error) {
	port, err := freePort()
	if err != nil {
		return false, err
	}
	return s.startOn(data, port)
}

// Restart stops the server (fast shutdown: every connection breaks) and
// starts it again on the same port with the same data, as a database
// restart or fail-over would. It returns when the server accepts
// connections again.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	s.stopOnce = sync.Once{}
	_, err := s.startOn(filepath.Join(s.dir, "data"), s.port)
	return err
}

func (s *Server) startOn(data string, port int) (exited bool, err error) {
	s.port = port
	s.exit = make(chan struct{})
	logf, err := os.OpenFile(filepath.Join(s.dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return false, fmt.Errorf("pgtest: %w", err)
	}
	defer logf.Close()
	if s.cred != nil {
		_ = logf.Chown(int(s.cred.Uid), int(s.cred.Gid))
	}
	durability := "off"
	if s.durable {
		durability = "on"
	}
	cmd := s.command(filepath.Join(BinDir, "postgres"), "-D", data,
		"-p", strconv.Itoa(port), "-k", s.dir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync="+durability, "-c", "synchronous_commit="+durability, "-c", "full_page_writes="+durability,
		"-c", "max_connections=300", "-c", "shared_buffers=64MB")
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test process dies without Stop, take the server down with it.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	if err := cmd.Start(); err != nil {
		return false, fmt.Errorf("pgtest: start postgres: %w", err)
	}
	s.cmd = cmd
	exit := s.exit
	go func() { s.werr = cmd.Wait(); close(exit) }()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		c, err := pgx.Connect(ctx, s.AdminDSN())
		if err == nil {
			_ = c.Close(ctx)
			return false, nil
		}
		select {
		case <-exit:
			log, _ := os.ReadFile(filepath.Join(s.dir, "postgres.log"))
			return true, fmt.Errorf("pgtest: postgres exited: %v\n%s", s.werr, log)
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-exit
			return false, fmt.Errorf("pgtest: postgres did not accept connections: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// AdminDSN is a DSN for the superuser "postgres" on the database "postgres".
func (s *Server) AdminDSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
}

// Stop shuts the server down (fast shutdown, then a kill after 15 s) and
// waits for it to exit. The directory is left in place.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		if s.cmd == nil || s.cmd.Process == nil {
			return
		}
		_ = s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.exit:
		case <-time.After(15 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exit
			s.stopErr = errors.New("pgtest: postgres did not stop in time; killed")
		}
	})
	return s.stopErr
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = s.dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "HOME=" + s.dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	return cmd
}

func nobody() (*syscall.Credential, error) {
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root and no user nobody: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("pgtest: user nobody: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

func chownTree(dir string, uid, gid int) error {
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// withDatabase returns dsn with its database name replaced by db. It
// handles URL and keyword/value DSNs.
func withDatabase(dsn, db string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		i := strings.Index(dsn, "://") + 3
		rest := dsn[i:]
		query := ""
		if q := strings.IndexByte(rest, '?'); q >= 0 {
			rest, query = rest[:q], rest[q:]
		}
		if slash := strings.IndexByte(rest, '/'); slash >= 0 {
			rest = rest[:slash]
		}
		return dsn[:i] + rest + "/" + db + query, nil
	}
	if _, err := pgx.ParseConfig(dsn); err != nil {
		return "", fmt.Errorf("pgtest: parse admin DSN: %w", err)
	}
	// In keyword/value form a later keyword overrides an earlier one.
	return dsn + " dbname=" + db, nil
}
