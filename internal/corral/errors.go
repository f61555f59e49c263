package corral

import (
	"errors"
	"fmt"
)

// Sentinel errors shared by every adapter. Wrap them with %w and test them
// with errors.Is; never match on error text.
var (
	// ErrNotFound: the store, forge or provider has no such object.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the object exists already (a runner name taken, a row
	// inserted twice).
	ErrConflict = errors.New("conflict")
	// ErrBusy: the runner is running a job and must not be removed.
	ErrBusy = errors.New("runner is busy")
	// ErrLimit: a global, tenant or pool maximum is reached.
	ErrLimit = errors.New("limit reached")
	// ErrUnauthorized: a webhook signature or a credential was refused.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: the caller is known but may not do this (an API
	// token of the wrong scope).
	ErrForbidden = errors.New("forbidden")
	// ErrBadInput: a payload or request is malformed.
	ErrBadInput = errors.New("bad input")
	// ErrTooLarge: a payload is over the size cap.
	ErrTooLarge = errors.New("payload too large")
	// ErrRateLimited: the forge asked us to slow down.
	ErrRateLimited = errors.New("rate limited")
	// ErrUnavailable: a forge, provider or store did not answer; retry later.
	ErrUnavailable = errors.New("unavailable")
	// ErrFenced: a leader-only write from a replica whose lease term is
	// over (it lost the lease, or never had it).
	ErrFenced = errors.New("fenced: not the leader's current term")
	// ErrJobNotWaiting: a runner bound to one job (Forgejo one-job mode)
	// was asked for a job the forge no longer lists as waiting: another
	// runner took it, or it ended. Not a fault of the pool or provider.
	ErrJobNotWaiting = errors.New("the job is no longer waiting for a runner")
)

// TransitionError is returned for a state change that the transition table
// does not allow. It names both states.
type TransitionError struct {
	Kind     string // "job" or "instance"
	From, To string
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("illegal %s transition from %q to %q", e.Kind, e.From, e.To)
}

// ErrIllegalTransition matches every *TransitionError with errors.Is.
var ErrIllegalTransition = errors.New("illegal transition")

func (e *TransitionError) Is(target error) bool { return target == ErrIllegalTransition }

// CallError describes a failed call to a forge or provider: which call,
// which target, which status and which request id, so that a log line is
// enough to find the request on the other side. Err carries the kind
// (ErrNotFound, ErrRateLimited, ...).
type CallError struct {
	Op        string // e.g. "generate-jitconfig", "provider create"
	Target    string // target or pool id
	Method    string
	URL       string // never with credentials in it
	Status    int
	RequestID string
	Err       error
}

func (e *CallError) Error() string {
	s := e.Op
	if e.Target != "" {
		s += " [" + e.Target + "]"
	}
	if e.Method != "" {
		s += " " + e.Method + " " + e.URL
	}
	if e.Status != 0 {
		s += fmt.Sprintf(": status %d", e.Status)
	}
	if e.RequestID != "" {
		s += " (request id " + e.RequestID + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *CallError) Unwrap() error { return e.Err }
