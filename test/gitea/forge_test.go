package gitea

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corral-ci/corral/internal/corral"
	"github.com/corral-ci/corral/internal/forge/forgetest"
	giteaforge "github.com/corral-ci/corral/internal/forge/gitea"
	"github.com/corral-ci/corral/internal/provider/process"
)

// ftHarness runs the forge conformance suite on the Gitea adapter against
// the real Gitea: a repository target with the admin's token, runners
// being the real gitea-runner started by the process provider from the
// adapter's bootstrap, exactly as corral starts them.
type ftHarness struct {
	g     *giteaServer
	repo  string
	image string
	prov  *process.Provider
	jobs  atomic.Int32
}

func (h *ftHarness) Forge(t *testing.T, prefix string) corral.Forge {
	c, err := giteaforge.NewClient(corral.Target{ID: "ft", Kind: corral.KindGitea, Scope: corral.ScopeRepo, Path: h.repo,
		URL: h.g.URL, Token: corral.Secret(h.g.token), RunnerPrefix: prefix}, giteaforge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (h *ftHarness) QueueJob(t *testing.T, labels []string, busyFor time.Duration) string {
	n := h.jobs.Add(1)
	name := fmt.Sprintf("ft%d", n)
	q := make([]string, len(labels))
	for i, l := range labels {
		q[i] = fmt.Sprintf("%q", l)
	}
	wf := fmt.Sprintf("name: %s\non:\n  push:\n    paths: ['.gitea/workflows/%s.yml']\njobs:\n  j:\n    runs-on: [%s]\n    steps:\n      - run: sleep %d\n",
		name, name, strings.Join(q, ", "), int(busyFor.Seconds()+0.5))
	if err := h.g.pushWorkflow(h.repo, name+".yml", wf); err != nil {
		t.Fatal(err)
	}
	return h.repo
}

func (h *ftHarness) StartRunner(t *testing.T, name string, b corral.Bootstrap) {
	spec := corral.InstanceSpec{InstanceID: name, Name: name, ControllerID: "forgetest", PoolID: "ft", Image: h.image,
		Bootstrap: b, Deadline: time.Now().Add(10 * time.Minute)}
	inst, err := h.prov.Create(context.Background(), spec)
	if err != nil {
		t.Fatalf("start runner %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := h.prov.Delete(ctx, inst); err != nil {
			t.Errorf("delete runner %s: %v", name, err)
		}
	})
}

func (h *ftHarness) CredentialEnv() string { return giteaforge.EnvToken }

func TestGitea_ForgeSuite(t *testing.T) {
	g := needGitea(t)
	repo, err := g.createRepo("forgetest")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	h := &ftHarness{g: g, repo: repo, image: filepath.Join(dir, "image")}
	// The runner image, as the rig's: sh and gitea-runner side by side.
	if err := os.MkdirAll(h.image, 0o755); err != nil {
		t.Fatal(err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	for name, to := range map[string]string{"sh": sh, "gitea-runner": runnerBin} {
		if err := os.Symlink(to, filepath.Join(h.image, name)); err != nil {
			t.Fatal(err)
		}
	}
	if h.prov, err = process.New(process.Config{Dir: filepath.Join(dir, "instances"), Shim: []string{corralBin, "shim"}}); err != nil {
		t.Fatal(err)
	}
	forgetest.Run(t, h)
}
