package docker

import (
	"archive/tar"
	"bytes"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// Environment the entry script reads. None of it is secret.
const (
	envWorkspace = "CORRAL_WORKSPACE"
	envDeadline  = "CORRAL_DEADLINE" // Unix seconds, rounded up
	envGrace     = "CORRAL_GRACE"    // seconds
	envFiles     = "CORRAL_FILES"    // "1": a tar of the bootstrap files comes on stdin
	envInstance  = "CORRAL_INSTANCE_ID"
	envPool      = "CORRAL_POOL_ID"
)

// entryScript is the container's entrypoint (`/bin/sh -c entryScript
// corral-entry COMMAND ARGS...`). It
//   - resolves a command path with a slash but not absolute against the
//     image's working directory (a bare name is looked up in PATH);
//   - moves to the workspace (a tmpfs) and, when CORRAL_FILES is set,
//     extracts the bootstrap files from the tar on its stdin there, so the
//     files are never part of the container's configuration;
//   - runs the command with stdin from /dev/null under `timeout`, which
//     sends SIGTERM at the deadline and SIGKILL a grace later. The deadline
//     is absolute and compared with the container's clock, so the instance
//     stops on time however long corral is away (clocks of corral and
//     the engine's host are assumed to agree to within a second). When the
//     runner ends, the init process (PID 1) ends and the kernel kills
//     everything left in the container.
//
// This script is the chosen way to enforce the deadline: the Engine API
// has no maximum lifetime for a container, and a stop requested by corral
// would not happen while corral is down.
const entryScript = `set -e
cmd=$1; shift
case $cmd in /*) ;; */*) cmd=$PWD/$cmd ;; esac
cd "$CORRAL_WORKSPACE"
if [ "$CORRAL_FILES" = 1 ]; then tar -x -f -; fi
exec </dev/null
if [ -n "$CORRAL_DEADLINE" ]; then
  left=$((CORRAL_DEADLINE - $(date +%s)))
  if [ "$left" -le 0 ]; then echo "corral: deadline passed before the runner started" >&2; exit 124; fi
  exec timeout -s TERM -k "$CORRAL_GRACE" "$left" "$cmd" "$@"
fi
exec "$cmd" "$@"
`

// reservedEnv are set by the provider; a bootstrap may not set them.
var reservedEnv = []string{envWorkspace, envDeadline, envGrace, envFiles, envInstance, envPool}

// entrypoint is the container's Entrypoint; the bootstrap command is its Cmd.
var entrypoint = []string{"/bin/sh", "-c", entryScript, "corral-entry"}

// environ builds the container's environment: the bootstrap's variables
// and the entry script's.
func (p *Provider) environ(spec corral.InstanceSpec) ([]string, error) {
	keys := make([]string, 0, len(spec.Bootstrap.Env))
	for k := range spec.Bootstrap.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	env := make([]string, 0, len(keys)+6)
	for _, k := range keys {
		v := spec.Bootstrap.Env[k].Reveal()
		switch {
		case k == "" || strings.ContainsAny(k, "=\x00"):
			return nil, fmt.Errorf("%w: environment variable name %q", corral.ErrBadInput, k)
		case slices.Contains(reservedEnv, k):
			return nil, fmt.Errorf("%w: environment variable %s is reserved", corral.ErrBadInput, k)
		case strings.ContainsRune(v, 0):
			return nil, fmt.Errorf("%w: environment variable %s holds a NUL byte", corral.ErrBadInput, k)
		}
		env = append(env, k+"="+v)
	}
	env = append(env,
		envInstance+"="+spec.InstanceID,
		envPool+"="+spec.PoolID,
		envWorkspace+"="+p.cfg.Workspace,
		envGrace+"="+strconv.Itoa(max(1, int((p.cfg.Grace+time.Second-1)/time.Second))),
	)
	if !spec.Deadline.IsZero() {
		env = append(env, envDeadline+"="+strconv.FormatInt(ceilUnix(spec.Deadline), 10))
	}
	if len(spec.Bootstrap.Files) > 0 {
		env = append(env, envFiles+"=1")
	}
	return env, nil
}

// ceilUnix is t in Unix seconds, rounded up, so the runner never stops
// before its deadline.
func ceilUnix(t time.Time) int64 {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return s
}

// filesTar packs the bootstrap files, relative to the workspace, into a
// tar: files 0600 and directories 0700.
func filesTar(files map[string]corral.Secret) ([]byte, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		clean := path.Clean(n)
		if n == "" || path.IsAbs(n) || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") || strings.ContainsRune(n, 0) {
			return nil, fmt.Errorf("%w: bootstrap file %q is not a relative path inside the workspace", corral.ErrBadInput, n)
		}
		names = append(names, n)
	}
	slices.Sort(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	now := time.Now()
	for _, n := range names {
		clean := path.Clean(n)
		var parents []string
		for d := path.Dir(clean); d != "."; d = path.Dir(d) {
			parents = append(parents, d)
		}
		slices.Reverse(parents)
		for _, d := range parents {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o700, ModTime: now}); err != nil {
				return nil, err
			}
		}
		b := []byte(files[n].Reveal())
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: clean, Mode: 0o600, Size: int64(len(b)), ModTime: now}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
