package shoes

import (
	"encoding/base64"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// killGrace is how long the setup script's deadline waits between SIGTERM
// and SIGKILL.
const killGrace = DefaultKillGrace

// setupScript is the POSIX shell script AddInstance hands over: run once
// on the new machine (cloud-init user data, a container's entrypoint), it
// makes a private directory, writes the bootstrap files there, exports the
// bootstrap environment (the runner's one-time credential is in one or the
// other) and starts the runner program (image followed by the bootstrap
// command), under the instance's deadline when coreutils' timeout exists.
// It holds secrets: it is never logged or stored.
func setupScript(spec corral.InstanceSpec, s *Settings) (string, error) {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	fmt.Fprintf(&b, "# corral runner setup for instance %s; generated, holds a one-time runner credential\n", spec.InstanceID)
	b.WriteString("set -eu\numask 077\n")
	base := "${TMPDIR:-/tmp}"
	if s.WorkDir != "" {
		base = quote(s.WorkDir)
	}
	fmt.Fprintf(&b, "mkdir -p %s\ndir=$(mktemp -d %s/corral-runner.XXXXXX)\ncd \"$dir\"\n", base, base)
	names := make([]string, 0, len(spec.Bootstrap.Files))
	for name := range spec.Bootstrap.Files {
		if !filepath.IsLocal(name) {
			return "", fmt.Errorf("%w: bootstrap file name %q leaves the runner's directory", corral.ErrBadInput, name)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if d := filepath.Dir(name); d != "." {
			fmt.Fprintf(&b, "mkdir -p %s\n", quote(d))
		}
		enc := base64.StdEncoding.EncodeToString([]byte(spec.Bootstrap.Files[name].Reveal()))
		fmt.Fprintf(&b, "printf '%%s' '%s' | base64 -d > %s\n", enc, quote(name))
	}
	keys := make([]string, 0, len(spec.Bootstrap.Env))
	for k := range spec.Bootstrap.Env {
		if !envKey.MatchString(k) {
			return "", fmt.Errorf("%w: bootstrap env name %q", corral.ErrBadInput, k)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := spec.Bootstrap.Env[k].Reveal()
		if strings.IndexByte(v, 0) >= 0 {
			return "", fmt.Errorf("%w: bootstrap env %s holds a NUL byte", corral.ErrBadInput, k)
		}
		fmt.Fprintf(&b, "export %s=%s\n", k, quote(v))
	}
	fmt.Fprintf(&b, "export CORRAL_INSTANCE_ID=%s CORRAL_INSTANCE_NAME=%s HOME=\"$dir\"\n", quote(spec.InstanceID), quote(spec.Name))
	if s.Prelude != "" {
		b.WriteString("# prelude (provider settings)\n")
		b.WriteString(strings.TrimRight(s.Prelude, "\n"))
		b.WriteString("\n")
	}
	argv := spec.Bootstrap.Command
	if spec.Image == "" && len(argv) == 0 {
		return "", fmt.Errorf("%w: no runner program: the pool names no image and the bootstrap no command", corral.ErrBadInput)
	}
	for _, a := range append([]string{spec.Image}, argv...) {
		if strings.IndexByte(a, 0) >= 0 {
			return "", fmt.Errorf("%w: NUL byte in the image or the runner command", corral.ErrBadInput)
		}
	}
	// The runner program: the image itself, or, when the image is a
	// directory on the machine (a runner release unpacked there), the
	// command's first word inside it; the rest are its arguments.
	switch {
	case spec.Image == "":
		fmt.Fprintf(&b, "set -- %s\n", words(argv))
	case len(argv) > 0:
		fmt.Fprintf(&b, "if [ -d %s ]; then set -- %s %s; else set -- %s %s; fi\n", quote(spec.Image),
			quote(strings.TrimRight(spec.Image, "/")+"/"+argv[0]), words(argv[1:]), quote(spec.Image), words(argv))
	default:
		fmt.Fprintf(&b, "set -- %s\n", quote(spec.Image))
	}
	if spec.Deadline.IsZero() {
		b.WriteString("exec \"$@\"\n")
		return b.String(), nil
	}
	// The deadline is absolute; the machine may boot late, so the time
	// left is computed there (its clock is assumed right). Rounded up to
	// the second: never before the deadline.
	fmt.Fprintf(&b, "left=$(( %d - $(date +%%s) ))\n", spec.Deadline.Add(time.Second-1).Unix())
	b.WriteString("if [ \"$left\" -le 0 ]; then echo 'corral: deadline passed before the runner started' >&2; exit 1; fi\n")
	fmt.Fprintf(&b, "if command -v timeout >/dev/null 2>&1; then exec timeout -k %d \"$left\" \"$@\"; fi\n", int(killGrace/time.Second))
	b.WriteString("exec \"$@\"\n")
	return b.String(), nil
}

func words(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = quote(a)
	}
	return strings.Join(q, " ")
}

var envKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// quote makes s one shell word.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
