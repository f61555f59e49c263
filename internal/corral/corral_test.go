package corral

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestJob_Transition(t *testing.T) {
	j := Job{State: JobRouted}
	if err := j.Transition(JobRunning); err != nil || j.State != JobRunning {
		t.Fatalf("routed->running: %v", err)
	}
	if err := j.Transition(JobRunning); err != nil {
		t.Fatalf("same state must be a no-op: %v", err)
	}
	_ = j.Transition(JobCompleted)
	err := j.Transition(JobRouted)
	if !errors.Is(err, ErrIllegalTransition) || j.State != JobCompleted {
		t.Fatalf("completed->routed: %v (state %s), want an illegal transition", err, j.State)
	}
	if msg := err.Error(); !strings.Contains(msg, `"completed"`) || !strings.Contains(msg, `"routed"`) || !strings.Contains(msg, "job") {
		t.Fatalf("error %q must name both states", msg)
	}
	for _, s := range JobStates {
		if s != JobCompleted && !CanJobTransition(s, JobCompleted) {
			t.Errorf("%s cannot complete: out-of-order completed events need every state to", s)
		}
	}
}

func TestInstance_Transition(t *testing.T) {
	in := Instance{State: InstPending}
	for _, to := range []InstanceState{InstStarting, InstIdle, InstBusy, InstDraining, InstDeleted} {
		if err := in.Transition(to); err != nil {
			t.Fatalf("-> %s: %v", to, err)
		}
	}
	err := in.Transition(InstIdle)
	var te *TransitionError
	if !errors.As(err, &te) || te.From != "deleted" || te.To != "idle" || te.Kind != "instance" {
		t.Fatalf("deleted->idle: %v", err)
	}
	if CanInstanceTransition(InstBusy, InstIdle) {
		t.Fatal("a busy runner must never go back to idle: ephemeral runners take one job")
	}
	for _, s := range LiveInstanceStates {
		if !s.Live() {
			t.Errorf("%s must count against limits", s)
		}
	}
	if InstDeleted.Live() {
		t.Error("deleted counts against limits")
	}
}

func TestIdleSchedule_Contains(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	office := IdleSchedule{Days: []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday},
		From: 8 * time.Hour, To: 18 * time.Hour, Location: berlin, MinIdle: 3}
	night := IdleSchedule{From: 22 * time.Hour, To: 6 * time.Hour, MinIdle: 1} // wraps midnight, UTC
	cases := []struct {
		s    IdleSchedule
		at   string
		want bool
	}{
		{office, "2026-11-25T07:30:00Z", true},  // Wed 08:30 in Berlin
		{office, "2026-11-25T06:30:00Z", false}, // Wed 07:30 in Berlin
		{office, "2026-11-25T17:00:00Z", false}, // Wed 18:00 in Berlin: end excluded
		{office, "2026-11-28T10:00:00Z", false}, // Saturday
		{night, "2026-11-25T23:00:00Z", true},
		{night, "2026-11-26T05:59:00Z", true},
		{night, "2026-11-26T06:00:00Z", false},
	}
	for _, c := range cases {
		at, _ := time.Parse(time.RFC3339, c.at)
		if got := c.s.Contains(at); got != c.want {
			t.Errorf("%+v at %s = %v, want %v", c.s.From, c.at, got, c.want)
		}
	}
	p := Pool{MinIdle: 0, Schedules: []IdleSchedule{office, night}}
	at, _ := time.Parse(time.RFC3339, "2026-11-25T07:30:00Z")
	if p.MinIdleAt(at) != 3 {
		t.Fatal("first matching schedule must win")
	}
}

func TestPool_Headroom(t *testing.T) {
	p := Pool{HeadroomCount: 2, HeadroomPercent: 25}
	for demand, want := range map[int]int{0: 2, 4: 2, 9: 3, 20: 5} {
		if got := p.Headroom(demand); got != want {
			t.Errorf("Headroom(%d) = %d, want %d", demand, got, want)
		}
	}
}

func TestSecret_Redacted(t *testing.T) {
	s := Secret("hunter2")
	var logs strings.Builder
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "token", s)
	b, _ := json.Marshal(struct{ T Secret }{s})
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %#v", s, s, s), string(b), logs.String()} {
		if strings.Contains(out, "hunter2") {
			t.Fatalf("secret leaked: %s", out)
		}
	}
	if s.Reveal() != "hunter2" {
		t.Fatal("Reveal lost the value")
	}
}
