package shoes

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// TestSetupScript_Runs runs a generated script with sh: a runner
// directory image whose program prints its arguments, environment and a
// file; values with quotes, spaces and newlines arrive intact; the prelude
// runs first; the files are private to the runner's user.
func TestSetupScript_Runs(t *testing.T) {
	img := filepath.Join(t.TempDir(), "runner")
	if err := os.MkdirAll(img, 0o755); err != nil {
		t.Fatal(err)
	}
	prog := "#!/bin/sh\necho \"args=$*\"\necho \"tok=$RUNNER_TOKEN\"\necho \"id=$CORRAL_INSTANCE_ID\"\necho \"file=$(cat conf/jit)\"\n" +
		"echo \"mode=$(stat -c %a conf/jit)\"\necho \"pre=$(cat prelude-ran)\"\n"
	if err := os.WriteFile(filepath.Join(img, "run.sh"), []byte(prog), 0o755); err != nil {
		t.Fatal(err)
	}
	tricky := "it's a \"value\" with $HOME and `ls`\nand a second line"
	spec := corral.InstanceSpec{InstanceID: "inst-1", Name: "corral-inst-1", Image: img,
		Bootstrap: corral.Bootstrap{Command: []string{"run.sh", "--jit", "a b"},
			Env:   map[string]corral.Secret{"RUNNER_TOKEN": corral.Secret(tricky)},
			Files: map[string]corral.Secret{"conf/jit": "jit-content"}},
		Deadline: time.Now().Add(time.Minute)}
	work := t.TempDir()
	script, err := setupScript(spec, &Settings{WorkDir: work, Prelude: "echo yes > prelude-ran"})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", script)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	for _, want := range []string{"args=--jit a b", "tok=" + tricky, "id=inst-1", "file=jit-content", "mode=600", "pre=yes"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if dirs, _ := filepath.Glob(filepath.Join(work, "corral-runner.*")); len(dirs) != 1 {
		t.Errorf("runner directories under work_dir: %v", dirs)
	}
	for _, bad := range []corral.InstanceSpec{
		{InstanceID: "x", Image: img, Bootstrap: corral.Bootstrap{Files: map[string]corral.Secret{"../escape": "x"}}},
		{InstanceID: "x", Image: img, Bootstrap: corral.Bootstrap{Env: map[string]corral.Secret{"BAD-NAME": "x"}}},
		{InstanceID: "x"},
	} {
		if _, err := setupScript(bad, &Settings{}); err == nil {
			t.Errorf("setupScript(%+v) accepted", bad.Bootstrap)
		}
	}
}
