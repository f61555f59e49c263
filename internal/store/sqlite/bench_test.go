package sqlite_test

import (
	"testing"

	"github.com/corral-ci/corral/internal/store/storetest"
)

// go test -run '^$' -bench . -benchtime 3s ./internal/store/sqlite/
func BenchmarkStore_Ingest(b *testing.B) {
	storetest.BenchIngest(b, open(b))
}

func BenchmarkStore_ListInstances10k(b *testing.B) {
	storetest.BenchListInstances(b, open(b), 10000)
}

func BenchmarkStore_ReadModifyWrite(b *testing.B) {
	storetest.BenchReadModifyWrite(b, open(b))
}
