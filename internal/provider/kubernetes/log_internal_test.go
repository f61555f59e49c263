package kubernetes

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestTailBuffer: what RunnerLog returns is the last max bytes of the log,
// whatever the sizes of the reads that bring it.
func TestTailBuffer(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, m := range []int{1, 7, 100, MaxLogBytes} {
		for _, total := range []int{0, 1, m - 1, m, m + 1, 5*m + 3} {
			if total < 0 {
				continue
			}
			log := make([]byte, total)
			for i := range log {
				log[i] = byte('a' + r.IntN(26))
			}
			tb := &tailBuffer{max: m}
			for rest := log; len(rest) > 0; {
				n := min(len(rest), 1+r.IntN(3*m))
				if k, err := tb.Write(rest[:n]); k != n || err != nil {
					t.Fatalf("Write = %d, %v", k, err)
				}
				rest = rest[n:]
			}
			want := log[max(0, total-m):]
			if got := tb.String(); !bytes.Equal([]byte(got), want) {
				t.Errorf("max %d, %d bytes written: got %d bytes, want the last %d", m, total, len(got), len(want))
			}
			if len(tb.b) > 2*m {
				t.Errorf("max %d: the buffer holds %d bytes", m, len(tb.b))
			}
		}
	}
}
