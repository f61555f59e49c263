package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// testTokens: tokens round-trip with every field, are found by the hash of
// their secret, refuse a second insert of an id or hash, and keep their
// first revocation time.
func testTokens(t *testing.T, s corral.Store) {
	h1, h2 := sha256.Sum256([]byte("secret-1")), sha256.Sum256([]byte("secret-2"))
	admin := corral.Token{ID: "tok-a", Name: "first admin", Scope: corral.ScopeAdmin, Hash: h1[:], CreatedAt: T0}
	read := corral.Token{ID: "tok-b", Name: "ci", Scope: corral.ScopeTenantRead, TenantID: "acme", Hash: h2[:],
		CreatedAt: T0, ExpiresAt: T0.Add(24 * time.Hour), LastUsed: T0.Add(time.Minute)}
	update(t, s, func(ctx context.Context, tx corral.Tx) error {
		if err := tx.PutToken(ctx, read); err != nil {
			return err
		}
		return tx.PutToken(ctx, admin)
	})
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		got, err := tx.Tokens(ctx)
		equal(t, "tokens", got, []corral.Token{admin, read})
		if err != nil {
			return err
		}
		got1, err := tx.TokenByHash(ctx, h2[:])
		equal(t, "token by hash", got1, read)
		if err != nil {
			return err
		}
		other := sha256.Sum256([]byte("secret-3"))
		_, err = tx.TokenByHash(ctx, other[:])
		wantErr(t, "unknown hash", err, corral.ErrNotFound)
		return nil
	})
	ctx := testCtx(t)
	dupID := admin
	dupID.Hash = bytes.Repeat([]byte{7}, 32)
	dupHash := admin
	dupHash.ID = "tok-c"
	for what, tk := range map[string]corral.Token{"same id": dupID, "same hash": dupHash} {
		err := s.Update(ctx, func(tx corral.Tx) error { return tx.PutToken(ctx, tk) })
		wantErr(t, "PutToken "+what, err, corral.ErrConflict)
	}
	update(t, s, func(ctx context.Context, tx corral.Tx) error {
		if err := tx.RevokeToken(ctx, "tok-b", T0.Add(time.Hour)); err != nil {
			return err
		}
		if err := tx.RevokeToken(ctx, "tok-b", T0.Add(2*time.Hour)); err != nil {
			return err
		}
		return tx.TouchToken(ctx, "tok-a", T0.Add(3*time.Hour))
	})
	for what, fn := range map[string]func(tx corral.Tx) error{
		"revoke": func(tx corral.Tx) error { return tx.RevokeToken(ctx, "nope", T0) },
		"touch":  func(tx corral.Tx) error { return tx.TouchToken(ctx, "nope", T0) },
	} {
		wantErr(t, what+" unknown token", s.Update(ctx, fn), corral.ErrNotFound)
	}
	admin.LastUsed = T0.Add(3 * time.Hour)
	read.RevokedAt = T0.Add(time.Hour)
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		got, err := tx.Tokens(ctx)
		equal(t, "tokens after revoke and touch", got, []corral.Token{admin, read})
		return err
	})
	if !read.Revoked() || admin.Revoked() || !read.Expired(T0.Add(24*time.Hour)) || read.Expired(T0) || admin.Expired(T0.Add(1e6*time.Hour)) {
		t.Error("Token.Revoked/Expired disagree with the fields")
	}
}

// testTenantFilters: jobs and instances filter by tenant (the API's tenant
// scoping relies on it).
func testTenantFilters(t *testing.T, s corral.Store) {
	a, b := SampleJob("t1", 1), SampleJob("t2", 2)
	b.TenantID = "other"
	a, b = putJob(t, s, a), putJob(t, s, b)
	ia, ib := SampleInstance("i-a", "p", corral.InstIdle), SampleInstance("i-b", "p", corral.InstIdle)
	ib.TenantID = "other"
	putInstances(t, s, ia, ib)
	view(t, s, func(ctx context.Context, tx corral.ReadTx) error {
		for tenant, want := range map[string][]int64{"acme": {a.ID}, "other": {b.ID}, "": {a.ID, b.ID}, "none": nil} {
			for _, states := range [][]corral.JobState{nil, {corral.JobQueued}, {corral.JobQueued, corral.JobRouted}} {
				jobs, err := tx.Jobs(ctx, corral.JobFilter{TenantID: tenant, States: states})
				if err != nil {
					return err
				}
				var ids []int64
				for _, j := range jobs {
					ids = append(ids, j.ID)
				}
				equal(t, "jobs of tenant "+tenant, ids, want)
			}
		}
		for tenant, want := range map[string][]string{"acme": {"i-a"}, "other": {"i-b"}, "": {"i-a", "i-b"}, "none": nil} {
			for _, states := range [][]corral.InstanceState{nil, corral.LiveInstanceStates} {
				ins, err := tx.Instances(ctx, corral.InstanceFilter{TenantID: tenant, States: states})
				if err != nil {
					return err
				}
				var ids []string
				for _, in := range ins {
					ids = append(ids, in.ID)
				}
				equal(t, "instances of tenant "+tenant, ids, want)
			}
		}
		return nil
	})
}
