package corral

import (
	"fmt"
	"time"
)

// TokenScope is what an API token may do.
type TokenScope string

// The token scopes. A tenant scope is bound to one tenant.
const (
	// ScopeAdmin reads and changes everything, every tenant.
	ScopeAdmin TokenScope = "admin"
	// ScopeTenantAdmin reads and changes its tenant's objects.
	ScopeTenantAdmin TokenScope = "tenant-admin"
	// ScopeTenantRead reads its tenant's objects.
	ScopeTenantRead TokenScope = "tenant-read"
	// ScopeMetrics reads the metrics page only (a scraper).
	ScopeMetrics TokenScope = "metrics"
)

// TokenScopes lists every scope.
var TokenScopes = []TokenScope{ScopeAdmin, ScopeTenantAdmin, ScopeTenantRead, ScopeMetrics}

// Tenanted says whether the scope is bound to a tenant.
func (s TokenScope) Tenanted() bool { return s == ScopeTenantAdmin || s == ScopeTenantRead }

// Valid returns an error wrapping ErrBadInput unless the scope and tenant
// fit together: a tenant scope names a tenant, the others name none.
func (s TokenScope) Valid(tenantID string) error {
	switch {
	case s != ScopeAdmin && s != ScopeTenantAdmin && s != ScopeTenantRead && s != ScopeMetrics:
		return fmt.Errorf("token scope %q: want one of admin, tenant-admin, tenant-read, metrics: %w", s, ErrBadInput)
	case s.Tenanted() && tenantID == "":
		return fmt.Errorf("token scope %s needs a tenant: %w", s, ErrBadInput)
	case !s.Tenanted() && tenantID != "":
		return fmt.Errorf("token scope %s is not bound to a tenant (tenant %q given): %w", s, tenantID, ErrBadInput)
	}
	return nil
}

// Token is an API bearer token as the store keeps it: its secret is never
// stored, only the secret's SHA-256 (Hash), so it cannot be recovered.
type Token struct {
	ID        string
	Name      string
	Scope     TokenScope
	TenantID  string // for tenant scopes
	Hash      []byte // SHA-256 of the secret, 32 bytes
	CreatedAt time.Time
	ExpiresAt time.Time // zero: never expires
	RevokedAt time.Time // zero: not revoked
	LastUsed  time.Time // zero: never used
}

// Expired says whether the token is past its expiry at now.
func (t Token) Expired(now time.Time) bool { return !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt) }

// Revoked says whether the token was revoked.
func (t Token) Revoked() bool { return !t.RevokedAt.IsZero() }

// InstanceGrant is what an instance that fetches its own bootstrap (the
// instances of garm providers) may fetch with its token, as the store
// keeps it: only the token's SHA-256 (Hash), and the bootstrap sealed
// with a key derived from the token itself, so that the store alone
// cannot open it. Every replica that is shown the token can.
type InstanceGrant struct {
	Hash       []byte
	InstanceID string
	Sealed     []byte
	// FetchBy ends the metadata paths; CallBy the callbacks.
	FetchBy, CallBy time.Time
	// Used lists the single-use pieces given so far (and "done" once the
	// runner reported its setup over).
	Used []string
}
