package providertest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The test runner's contract. A harness's image runs a program that behaves
// like RunTestRunner; a Go harness simply calls it (for instance from a
// TestMain that dispatches on os.Args[1] == RunnerArg).
const (
	// RunnerArg and GrandchildArg are the first arguments that select the
	// test runner and its grandchild in a binary that plays several roles.
	RunnerArg     = "corral-test-runner"
	GrandchildArg = "corral-test-grandchild"

	// EnvRunFor: a duration; the runner exits with EnvExitCode (default 0)
	// after it. Unset: the runner runs until a signal ends it.
	EnvRunFor = "CORRAL_TEST_RUN_FOR"
	// EnvExitCode: the code the runner exits with after EnvRunFor.
	EnvExitCode = "CORRAL_TEST_EXIT_CODE"
	// EnvEcho: the runner prints "echo=<value>".
	EnvEcho = "CORRAL_TEST_ECHO"
	// EnvReadFile: a path relative to the runner's working directory; the
	// runner prints "file=<content>".
	EnvReadFile = "CORRAL_TEST_READ_FILE"
	// EnvGrandchild: a marker; the runner starts a descendant in a new
	// process group that ignores SIGTERM and SIGINT and has the marker
	// in its command line, then prints "grandchild=<marker>".
	EnvGrandchild = "CORRAL_TEST_GRANDCHILD"
	// EnvStartedFile: a path relative to the working directory; the runner
	// writes its start time (Unix nanoseconds) there first thing.
	EnvStartedFile = "CORRAL_TEST_STARTED_FILE"
)

// RunTestRunner is the well-behaved test runner. It prints
// "corral-test-runner: pid=<pid> instance=<CORRAL_INSTANCE_ID>", then the
// lines asked for by the CORRAL_TEST_* variables, and returns its exit code:
// 0 on SIGTERM or SIGINT, EnvExitCode after EnvRunFor.
func RunTestRunner() int {
	started := time.Now()
	if f := os.Getenv(EnvStartedFile); f != "" {
		if os.WriteFile(f+".tmp", []byte(strconv.FormatInt(started.UnixNano(), 10)), 0o600) == nil {
			_ = os.Rename(f+".tmp", f) // readers never see a part
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	fmt.Printf("corral-test-runner: pid=%d instance=%s\n", os.Getpid(), os.Getenv("CORRAL_INSTANCE_ID"))
	if v, ok := os.LookupEnv(EnvEcho); ok {
		fmt.Printf("echo=%s\n", v)
	}
	if f := os.Getenv(EnvReadFile); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Printf("file-error=%v\n", err)
		} else {
			fmt.Printf("file=%s\n", b)
		}
	}
	if m := os.Getenv(EnvGrandchild); m != "" {
		exe, err := os.Executable()
		if err == nil {
			cmd := exec.Command(exe, GrandchildArg, m)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			err = cmd.Start()
		}
		if err != nil {
			fmt.Printf("grandchild-error=%v\n", err)
		} else {
			fmt.Printf("grandchild=%s\n", m)
		}
	}
	var timer <-chan time.Time
	if d, err := time.ParseDuration(os.Getenv(EnvRunFor)); err == nil {
		timer = time.After(d)
	}
	select {
	case s := <-sigs:
		fmt.Printf("corral-test-runner: %v\n", s)
		return 0
	case <-timer:
		code, _ := strconv.Atoi(os.Getenv(EnvExitCode))
		fmt.Printf("corral-test-runner: done, exit %d\n", code)
		return code
	}
}

// RunGrandchild is the descendant the test runner starts: it ignores
// SIGTERM and SIGINT and lives until killed.
func RunGrandchild() int {
	signal.Ignore(syscall.SIGTERM, syscall.SIGINT)
	fmt.Println("corral-test-grandchild: ready")
	for {
		time.Sleep(time.Hour)
	}
}

// HostProcesses returns the pids of the live processes on this host whose
// command line has an argument equal to arg. Zombies have no command line
// and do not count. Harnesses whose instances run on this host's kernel
// (processes, containers) use it to implement Harness.Processes.
func HostProcesses(arg string) ([]int, error) {
	names, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil || len(b) == 0 {
			continue
		}
		for a := range bytes.SplitSeq(bytes.TrimRight(b, "\x00"), []byte{0}) {
			if string(a) == arg {
				pid, _ := strconv.Atoi(strings.Split(n, "/")[2])
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids, nil
}
