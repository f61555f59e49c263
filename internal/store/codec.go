// Package store holds what the corral.Store adapters share: the encoding of
// configuration rows and list columns as JSON, so that SQLite and
// PostgreSQL store the same bytes. The adapters are the subpackages sqlite
// and postgres; storetest is the one conformance suite both pass.
package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// EncodeStrings encodes a list of strings (labels, target ids) as JSON;
// nil stays distinct from empty.
func EncodeStrings(s []string) (string, error) {
	b, err := json.Marshal(s)
	return string(b), err
}

// DecodeStrings is the inverse of EncodeStrings. Lists without escapes (all
// labels in practice) take a fast path that does not go through
// encoding/json: the reconciler decodes thousands of them at once.
func DecodeStrings(s string) ([]string, error) {
	if s == "" || s == "null" {
		return nil, nil
	}
	if out, ok := decodePlainStrings(s); ok {
		return out, nil
	}
	var out []string
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, fmt.Errorf("decode string list: %w", err)
	}
	return out, nil
}

// decodePlainStrings decodes ["a","b"] when no element holds a backslash or
// a quote; ok is false otherwise (the caller falls back to encoding/json).
func decodePlainStrings(s string) (out []string, ok bool) {
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' || strings.IndexByte(s, '\\') >= 0 {
		return nil, false
	}
	body := s[1 : len(s)-1]
	out = make([]string, 0, strings.Count(body, ",")+1)
	if body == "" {
		return out, true
	}
	for {
		if len(body) < 2 || body[0] != '"' {
			return nil, false
		}
		end := strings.IndexByte(body[1:], '"')
		if end < 0 {
			return nil, false
		}
		out = append(out, body[1:1+end])
		body = body[end+2:]
		if body == "" {
			return out, true
		}
		if body[0] != ',' {
			return nil, false
		}
		body = body[1:]
	}
}

// EncodeRoutes encodes a job's routes as JSON.
func EncodeRoutes(r []corral.Route) (string, error) {
	b, err := json.Marshal(r)
	return string(b), err
}

// DecodeRoutes is the inverse of EncodeRoutes.
func DecodeRoutes(s string) ([]corral.Route, error) {
	if s == "" {
		return nil, nil
	}
	var out []corral.Route
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, fmt.Errorf("decode routes: %w", err)
	}
	return out, nil
}

// targetRecord is a Target without its key columns and without secrets:
// WebhookSecret and Token live in the configuration only.
type targetRecord struct {
	Kind         corral.TargetKind
	Scope        corral.Scope
	Path         string
	URL          string
	RunnerPrefix string            `json:",omitempty"`
	Settings     map[string]string `json:",omitempty"`
	Mode         corral.TargetMode `json:",omitempty"`
	PollInterval time.Duration     `json:",omitempty"`
	Sealed       map[string]string `json:",omitempty"` // ciphertext only
	FromAPI      bool              `json:",omitempty"`
}

// EncodeTarget encodes t without its secrets (sealed credentials are
// kept as their ciphertext).
func EncodeTarget(t corral.Target) (string, error) {
	b, err := json.Marshal(targetRecord{
		Kind: t.Kind, Scope: t.Scope, Path: t.Path, URL: t.URL,
		RunnerPrefix: t.RunnerPrefix, Settings: t.Settings,
		Mode: t.Mode, PollInterval: t.PollInterval, Sealed: t.Sealed, FromAPI: t.FromAPI,
	})
	return string(b), err
}

// DecodeTarget rebuilds a target from its key columns and record; its
// secrets are empty.
func DecodeTarget(id, tenantID, data string) (corral.Target, error) {
	var r targetRecord
	if err := json.Unmarshal([]byte(data), &r); err != nil {
		return corral.Target{}, fmt.Errorf("decode target %s: %w", id, err)
	}
	return corral.Target{
		ID: id, TenantID: tenantID, Kind: r.Kind, Scope: r.Scope, Path: r.Path,
		URL: r.URL, RunnerPrefix: r.RunnerPrefix, Settings: r.Settings,
		Mode: r.Mode, PollInterval: r.PollInterval, Sealed: r.Sealed, FromAPI: r.FromAPI,
	}, nil
}

// poolRecord is a Pool as stored: like Pool, but schedules name their time
// zone (a *time.Location has no JSON form).
type poolRecord struct {
	corral.Pool
	Schedules []scheduleRecord `json:",omitempty"`
}

type scheduleRecord struct {
	Days     []time.Weekday `json:",omitempty"`
	From, To time.Duration
	Location string `json:",omitempty"` // "" = nil (UTC)
	MinIdle  int
}

// EncodePool encodes p (its ID and TenantID are also key columns).
func EncodePool(p corral.Pool) (string, error) {
	r := poolRecord{Pool: p}
	r.Pool.Schedules = nil
	for _, s := range p.Schedules {
		sr := scheduleRecord{Days: s.Days, From: s.From, To: s.To, MinIdle: s.MinIdle}
		if s.Location != nil {
			sr.Location = s.Location.String()
		}
		r.Schedules = append(r.Schedules, sr)
	}
	b, err := json.Marshal(r)
	return string(b), err
}

// DecodePool is the inverse of EncodePool. Time zones are loaded by name.
func DecodePool(data string) (corral.Pool, error) {
	var r poolRecord
	if err := json.Unmarshal([]byte(data), &r); err != nil {
		return corral.Pool{}, fmt.Errorf("decode pool: %w", err)
	}
	p := r.Pool
	if string(p.ProviderOptions) == "null" {
		p.ProviderOptions = nil
	}
	for _, sr := range r.Schedules {
		s := corral.IdleSchedule{Days: sr.Days, From: sr.From, To: sr.To, MinIdle: sr.MinIdle}
		if sr.Location != "" {
			loc, err := time.LoadLocation(sr.Location)
			if err != nil {
				return corral.Pool{}, fmt.Errorf("decode pool %s: %w", p.ID, err)
			}
			s.Location = loc
		}
		p.Schedules = append(p.Schedules, s)
	}
	return p, nil
}

// TimeTruncate is the precision both backends keep: microseconds.
const TimeTruncate = time.Microsecond
