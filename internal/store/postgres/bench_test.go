package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/store/postgres"
	"github.com/corral-ci/corral/internal/store/storetest"
	"github.com/corral-ci/corral/internal/testutil/pgtest"
)

// go test -run '^$' -bench . -benchtime 3s ./internal/store/postgres/
func BenchmarkStore_Ingest(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := postgres.Open(ctx, pgtest.DSN(b), postgres.Options{MaxConns: 16})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchIngest(b, s)
}

func BenchmarkStore_ReadModifyWrite(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := postgres.Open(ctx, pgtest.DSN(b), postgres.Options{MaxConns: 16})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchReadModifyWrite(b, s)
}

func BenchmarkStore_ListInstances10k(b *testing.B) {
	storetest.BenchListInstances(b, open(b), 10000)
}
