package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
)

// FuzzParse feeds any bytes to the config parser as a file named
// corral.yaml: it never panics, and a refusal is a *ValidationError whose
// every problem names the file (or the environment) and says what is
// wrong. Inputs naming file: or sealed: secrets are skipped: the fuzzer
// must not read the machine's files (a FIFO would block it).
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	seeds = append(seeds, "example.yaml")
	for _, name := range seeds {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("pools:\n  - id: a\n    labels: [x]\n    max_instances: -1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if bytes.Contains(data, []byte("file:")) || bytes.Contains(data, []byte("sealed:")) {
			return
		}
		_, err := Parse("corral.yaml", data, nil)
		if err == nil {
			return
		}
		var ve *ValidationError
		if !errors.As(err, &ve) || len(ve.Problems) == 0 {
			t.Fatalf("refusal %T %v is not a ValidationError with problems", err, err)
		}
		if !errors.Is(err, corral.ErrBadInput) {
			t.Fatalf("refusal %v does not wrap ErrBadInput", err)
		}
		for _, p := range ve.Problems {
			if p.File == "" || p.Msg == "" {
				t.Fatalf("problem %+v does not say where or what", p)
			}
		}
	})
}
