package shoes

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/provider"
	"github.com/corral-ci/corral/internal/provider/providertest"
	"github.com/corral-ci/corral/internal/provider/shoes/shoespb"
)

func TestPickSize(t *testing.T) {
	custom := []ResourceType{{"large", 8, 16384}, {"small", 2, 4096}}
	cases := []struct {
		name     string
		rts      []ResourceType
		f        corral.Flavor
		explicit string
		want     shoespb.Size
		err      error
	}{
		{"empty flavor: plugin default", nil, corral.Flavor{}, "", shoespb.Size_SIZE_UNKNOWN, nil},
		{"default table, smallest fit", nil, corral.Flavor{CPU: 2, MemoryMB: 3000}, "", shoespb.Size_SIZE_MEDIUM, nil},
		{"default table, memory only", nil, corral.Flavor{MemoryMB: 512}, "", shoespb.Size_SIZE_NANO, nil},
		{"custom table, unordered", custom, corral.Flavor{CPU: 1, MemoryMB: 1024}, "", shoespb.Size_SIZE_SMALL, nil},
		{"custom table, large", custom, corral.Flavor{CPU: 4, MemoryMB: 1024}, "", shoespb.Size_SIZE_LARGE, nil},
		{"nothing fits", custom, corral.Flavor{CPU: 64}, "", 0, corral.ErrBadInput},
		{"explicit wins", custom, corral.Flavor{CPU: 64}, "4xlarge", shoespb.Size_SIZE_4XLARGE, nil},
		{"explicit unknown", nil, corral.Flavor{}, "huge", 0, corral.ErrBadInput},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := pickSize(c.rts, c.f, c.explicit)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("pickSize = %v, %v; want error %v", got, err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("pickSize = %v (%s), %v; want %v", got, sizeName(got), err, c.want)
			}
		})
	}
}

func TestSettings_Validate(t *testing.T) {
	s := Settings{Path: "shoes-lxd", Env: map[string]string{"bad-name": "x", "PLUGIN_MIN_PORT": "1"},
		Timeouts: Timeouts{Create: -time.Second}, RunnerName: "uuid", StateDir: "rel",
		ResourceTypes: []ResourceType{{"tiny", 0, 1}, {"small", 1, 1}, {"small", 1, 1}}}
	err := s.Validate()
	var fes provider.FieldErrors
	if !errors.As(err, &fes) {
		t.Fatalf("Validate = %v, want FieldErrors", err)
	}
	for _, f := range []string{"path", "env.bad-name", "env.PLUGIN_MIN_PORT", "timeouts.create", "runner_name", "state_dir",
		"resource_types[0].name", "resource_types[0].cpu", "resource_types[2].name"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("Validate error lacks %s:\n%v", f, err)
		}
	}
	ok := Settings{Path: "/usr/local/bin/shoes-lxd", RunnerName: NameMyshoes, ResourceTypes: []ResourceType{{"small", 2, 4096}}}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate of good settings: %v", err)
	}
}

func TestRunnerName_Myshoes(t *testing.T) {
	p, err := New("lxd", Settings{Path: "/bin/true", RunnerName: NameMyshoes, StateDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := p.runnerName(corral.InstanceSpec{InstanceID: "0123456789abcdef0123456789abcdef", Name: "corral-x"})
	if want := "myshoes-01234567-89ab-cdef-0123-456789abcdef"; got != want {
		t.Errorf("runner name %q, want %q", got, want)
	}
}

// TestSetupScript_Deadline: the setup script stops the runner at the
// instance's deadline on the machine itself, with corral not involved.
func TestSetupScript_Deadline(t *testing.T) {
	h := newHarness(t, "off")
	p := h.provider(t, h.settings())
	spec := providertest.Spec(t, h, providertest.Unique("ctl-"), nil)
	spec.Deadline = time.Now().Add(2 * time.Second)
	inst := providertest.Create(t, p, spec)
	runner := func() int {
		return providertest.FindProc(func(pid int) bool {
			return providertest.ProcHas(pid, "cmdline", providertest.RunnerArg) && providertest.ProcHasEntry(pid, "CORRAL_INSTANCE_ID="+inst.InstanceID)
		})
	}
	providertest.Eventually(t, "the runner to start", func() bool { return runner() != 0 })
	if time.Now().After(spec.Deadline) {
		t.Skip("the runner started after its deadline: the machine is too slow to show anything")
	}
	t0 := time.Now()
	providertest.Eventually(t, "the deadline to stop the runner", func() bool { return runner() == 0 })
	t.Logf("stopped %v after the wait began, %v after the deadline", time.Since(t0), time.Since(spec.Deadline))
	if time.Now().Before(spec.Deadline) {
		t.Errorf("runner stopped before its deadline")
	}
	_ = p.Delete(context.Background(), inst)
}

// TestSetupScript_NoSecretOnDisk: corral's record of a machine holds no
// bootstrap secret.
func TestSetupScript_NoSecretOnDisk(t *testing.T) {
	h := newHarness(t, "off")
	p := h.provider(t, h.settings())
	spec := providertest.Spec(t, h, providertest.Unique("ctl-"), map[string]corral.Secret{"RUNNER_TOKEN": "tok-secret-value"})
	spec.Bootstrap.Files["jit"] = "jit-secret-value"
	providertest.Create(t, p, spec)
	rec, err := p.led.get(spec.InstanceID)
	if err != nil || rec == nil || rec.CloudID == "" {
		t.Fatalf("record = %+v, %v", rec, err)
	}
	recs, _ := p.led.all()
	for _, r := range recs {
		if s := strings.Join(append(r.Labels, r.CloudID, r.RunnerName), " "); strings.Contains(s, "secret-value") {
			t.Errorf("record holds a secret: %+v", r)
		}
	}
}
