package route

import (
	"reflect"
	"testing"

	"github.com/corral-ci/corral/internal/corral"
)

func TestCovers(t *testing.T) {
	tests := []struct {
		name        string
		runner, job []string
		want        bool
	}{
		{"equal", []string{"a", "b"}, []string{"a", "b"}, true},
		{"superset", []string{"self-hosted", "X64", "corral"}, []string{"corral", "x64"}, true},
		{"case", []string{"Corral"}, []string{"CORRAL"}, true},
		{"missing", []string{"corral"}, []string{"corral", "gpu"}, false},
		{"empty job", []string{"corral"}, nil, true},
		{"empty runner", nil, []string{"corral"}, false},
		{"blank job label", []string{"corral"}, []string{" ", "corral "}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Covers(tt.runner, tt.job); got != tt.want {
				t.Errorf("Covers(%v, %v) = %v", tt.runner, tt.job, got)
			}
		})
	}
}

func TestWarmLabels(t *testing.T) {
	p := corral.Pool{Labels: []string{"corral", "Linux"}, Flavor: corral.Flavor{Arch: "aarch64"}}
	if got, want := WarmLabels(p), []string{"corral", "Linux", "self-hosted", "arm64"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got := WarmLabels(corral.Pool{Labels: []string{"corral"}}); !reflect.DeepEqual(got, []string{"corral", "self-hosted", "linux", "x64"}) {
		t.Errorf("default arch: got %v", got)
	}
	if !reflect.DeepEqual(p.Labels, []string{"corral", "Linux"}) {
		t.Error("WarmLabels changed the pool's labels")
	}
}

func TestRunnerLabels(t *testing.T) {
	p := corral.Pool{Labels: []string{"corral"}}
	job := []string{"self-hosted", "Corral", "corral", "run-42", " ", "RUN-42"}
	got := RunnerLabels(p, job)
	if want := []string{"self-hosted", "Corral", "run-42"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if !Covers(got, job) {
		t.Error("runner labels do not cover the job")
	}
	if job[1] != "Corral" || job[2] != "corral" {
		t.Error("RunnerLabels changed the job's labels")
	}
	if got := RunnerLabels(p, nil); !reflect.DeepEqual(got, WarmLabels(p)) {
		t.Errorf("no job labels: got %v", got)
	}
}
