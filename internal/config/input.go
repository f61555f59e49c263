package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"

	"github.com/corral-ci/corral/internal/route"
)

var errTooLarge = errors.New("too large")

// readCapped reads at most max bytes of a file; a longer one (or an endless
// one such as /dev/zero) is errTooLarge.
func readCapped(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, errTooLarge
	}
	return b, nil
}

// dsnHasPassword reports whether a store DSN written in the config file
// carries a password (postgres://user:pw@host/db, or password=pw as a
// query or keyword parameter), which deserves the literal-secret warning.
func dsnHasPassword(s string) bool {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" {
		if _, ok := u.User.Password(); ok {
			return true
		}
		if u.Query().Get("password") != "" {
			return true
		}
	}
	for _, f := range strings.Fields(s) { // keyword form: host=db password=pw
		if v, ok := strings.CutPrefix(strings.ToLower(f), "password="); ok && v != "" {
			return true
		}
	}
	return false
}

var hostRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$`)

// input checks the keys of issue 18: default_arch, allowed_hosts and the
// pools' priorities.
func (b *builder) input() string {
	c := b.c
	arch := route.ArchX64
	if c.DefaultArch != "" {
		a, ok := route.NormalizeArch(c.DefaultArch)
		if !ok {
			b.bad("default_arch", "unknown arch %q (want x64 or arm64)", c.DefaultArch)
		} else {
			arch = a
		}
	}
	for i, h := range c.AllowedHosts {
		if net.ParseIP(h) == nil && !hostRE.MatchString(h) {
			b.bad(fmt.Sprintf("allowed_hosts[%d]", i), "want a host name without scheme, port or path, got %q", h)
		}
	}
	for i, p := range c.Pools {
		if p.Priority < 0 {
			b.bad(fmt.Sprintf("pools[%d].priority", i), "must not be negative (0 routes first)")
		}
	}
	return arch
}
