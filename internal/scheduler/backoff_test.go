package scheduler

import (
	"errors"
	"testing"
	"time"
)

func TestBackoff_Fail(t *testing.T) {
	b := newBackoff("provider", time.Second, 30*time.Second, 1)
	now := time.Unix(1000, 0)
	var prev time.Duration
	for i := 1; i <= 8; i++ {
		d := b.fail("p", now, errors.New("boom"))
		want := time.Second << (i - 1)
		if want > 30*time.Second {
			want = 30 * time.Second
		}
		if d < want/2 || d > want {
			t.Fatalf("failure %d: rest %v, want in [%v, %v]", i, d, want/2, want)
		}
		if i > 1 && want < 30*time.Second && d <= prev/2 {
			t.Fatalf("failure %d: rest %v did not grow from %v", i, d, prev)
		}
		prev = d
	}
	if r, why := b.resting("p", now.Add(time.Millisecond)); !r || why != "boom" {
		t.Fatalf("resting = %v %q, want true boom", r, why)
	}
	if r, _ := b.resting("other", now); r {
		t.Fatal("a failing pool made another pool rest")
	}
	if r, _ := b.resting("p", now.Add(31*time.Second)); r {
		t.Fatal("still resting after the longest rest")
	}
	b.ok("p")
	if r, _ := b.resting("p", now); r {
		t.Fatal("resting after a success")
	}
}
