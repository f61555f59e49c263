// Package doctor checks a corral setup: the configuration, the store, each
// provider instance, each target's credentials, webhook and clock, and the
// runner cache. Each check is one function returning Results that say what
// is wrong and how to fix it. Checks only read: they never migrate the
// store, start an instance, register a runner or redeliver a webhook, and
// no Result ever holds a secret.
package doctor

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Status is a check's verdict.
type Status string

// Verdicts, from good to bad.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Result is one check's verdict: what was checked, what is wrong, how to
// fix it.
type Result struct {
	Check   string `json:"check"`
	Status  Status `json:"status"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

func ok(check, format string, args ...any) Result {
	return Result{Check: check, Status: OK, Message: fmt.Sprintf(format, args...)}
}

func warn(check, fix, format string, args ...any) Result {
	return Result{Check: check, Status: Warn, Message: fmt.Sprintf(format, args...), Fix: fix}
}

func fail(check, fix, format string, args ...any) Result {
	return Result{Check: check, Status: Fail, Message: fmt.Sprintf(format, args...), Fix: fix}
}

// Failed reports whether any result is a failure.
func Failed(rs []Result) bool {
	for _, r := range rs {
		if r.Status == Fail {
			return true
		}
	}
	return false
}

// Print writes one line per result for people: "ok", "WARN" or "FAIL",
// the check, the message, and the fix after "→".
func Print(w io.Writer, rs []Result) error {
	for _, r := range rs {
		tag := map[Status]string{OK: "ok  ", Warn: "WARN", Fail: "FAIL"}[r.Status]
		line := fmt.Sprintf("%s  %-28s %s", tag, r.Check, r.Message)
		if r.Fix != "" {
			line += " → " + r.Fix
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}

// MaxSkew is the clock difference with a forge above which the clock
// check fails: webhook deliveries, App JWTs (valid 10 minutes, issued 60 s
// in the past) and token expiries all depend on agreeing clocks.
const MaxSkew = 30 * time.Second

// Clock compares the local clock with a forge's Date header, taken from an
// answer received at local time at (the header has one-second resolution,
// so skews under a second do not show).
func Clock(check string, h http.Header, sent, at time.Time) Result {
	d := h.Get("Date")
	if d == "" {
		return warn(check, "", "the forge sent no Date header; clock skew not checked")
	}
	forge, err := http.ParseTime(d)
	if err != nil {
		return warn(check, "", "the forge's Date header %q does not parse; clock skew not checked", d)
	}
	// The forge stamped Date between sent and at; take the middle.
	local := sent.Add(at.Sub(sent) / 2).Truncate(time.Second)
	skew := forge.Sub(local)
	abs := skew
	if abs < 0 {
		abs = -abs
	}
	if abs > MaxSkew {
		side := "behind"
		if skew > 0 {
			side = "ahead of"
		}
		return fail(check, "synchronise this host's clock (NTP: timedatectl set-ntp true, chrony or systemd-timesyncd)",
			"the forge's clock is %s %s this host's (more than %s): webhook and token times will be judged wrong",
			abs.Round(time.Second), side, MaxSkew)
	}
	return ok(check, "within %s of the forge's Date header", max(abs.Round(time.Second), time.Second))
}

// scrub removes a secret from a message in case an error quotes it.
func scrub(s string, secrets ...string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return s
}
