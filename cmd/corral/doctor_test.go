package main

import (
	"errors"
	"strings"
	"testing"
)

func TestRun_Doctor(t *testing.T) {
	t.Run("bad flags exit 2", func(t *testing.T) {
		for _, args := range [][]string{{"doctor"}, {"doctor", "-config", "x.yaml", "-o", "yaml"}} {
			t.Setenv("CORRAL_CONFIG", "")
			_, err := runCmd(args...)
			var ee exitError
			if !errors.As(err, &ee) || ee != 2 {
				t.Errorf("%q: err = %v, want exit status 2", args, err)
			}
		}
	})
	t.Run("a broken config file fails with its line", func(t *testing.T) {
		cfg := writeFile(t, routeConfig+"  - {id: bad, labels: [x], provider: process, max_instances: many}\n")
		out, err := runCmd("doctor", "-config", cfg)
		var ee exitError
		if !errors.As(err, &ee) || ee != 1 || !strings.HasPrefix(out, "FAIL  config") || !strings.Contains(out, "corral.yaml:") {
			t.Fatalf("err = %v, output:\n%s", err, out)
		}
	})
}
