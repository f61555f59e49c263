package gitea

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/corral-ci/corral/internal/testutil/dockertest"
	"github.com/corral-ci/corral/internal/testutil/e2etest"
)

// containerStep proves that a step ran inside the runner's container and
// not on this host: there /bin/sh is busybox and gitea-runner is on PATH
// at /bin (the host has neither). Every command is a busybox applet.
const containerStep = `test "$(readlink /bin/sh)" = busybox && test -x /bin/gitea-runner && echo job on $(hostname)`

// dockerRig is a rig whose only pool, "box" (label corral-c), runs each
// runner in a container on a private Docker daemon, with the host's
// network so that the runner reaches Gitea on 127.0.0.1.
type dockerRig struct {
	*rig
	host string
	c    *client.Client
}

func newDockerRig(t testing.TB, poolMax int) *dockerRig {
	t.Helper()
	r := newRig(t)
	if _, err := os.Stat("/bin/gitea-runner"); err == nil {
		t.Fatal("/bin/gitea-runner exists on this host: containerStep would not prove a step ran in a container")
	}
	d := dockertest.NewDaemon(t)
	img := dockertest.ImageOn(t, d.Host(), "corral-gitea-runner", map[string]string{"/bin/gitea-runner": runnerBin})
	c, err := client.New(client.WithHost(d.Host()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r.cfg.Pools = []e2etest.Pool{{ID: "box", Labels: []string{"corral-c"}, Provider: "docker", Image: img, Flavor: "1cpu1gb1gb",
		MaxInstances: poolMax, BootTimeout: "60s", MaxJobRuntime: "5m", IdleTimeout: "10s"}}
	r.cfg.Docker = &e2etest.Docker{Network: "host", Endpoints: []e2etest.Endpoint{{Name: "private", Host: d.Host()}}}
	return &dockerRig{rig: r, host: d.Host(), c: c}
}

// pushSteps pushes a workflow of n jobs on [self-hosted, corral-c], each
// running step.
func (r *dockerRig) pushSteps(t testing.TB, name string, n int, step string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\non:\n  push:\n    paths: ['.gitea/workflows/%s.yml']\njobs:\n", name, name)
	for i := range n {
		fmt.Fprintf(&b, "  j%02d:\n    runs-on: [self-hosted, corral-c]\n    steps:\n      - run: %s\n", i, step)
	}
	if err := r.g.pushWorkflow(r.repo, name+".yml", b.String()); err != nil {
		t.Fatal(err)
	}
}

// containers lists every container on the private daemon (it runs nothing
// but this rig's runners), as "name (state)".
func (r *dockerRig) containers(t testing.TB) ([]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := r.c.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range res.Items {
		name := c.ID
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		out = append(out, fmt.Sprintf("%s (%s)", name, c.State))
	}
	return out, nil
}

// TestGitea_Containers: five jobs on a docker pool succeed at Gitea, each
// on its own runner, every step inside a busybox container; afterwards
// Gitea lists no runner of corral's and the engine holds no container.
func TestGitea_Containers(t *testing.T) {
	const jobs = 5
	r := newDockerRig(t, 6)
	p := r.start(t)
	start := time.Now()
	r.pushSteps(t, "boxes", jobs, containerStep)
	var js []job
	seen := 0
	waitFor(t, 4*time.Minute, fmt.Sprintf("%d jobs completed at Gitea", jobs), func() bool {
		if cs, err := r.containers(t); err == nil {
			seen = max(seen, len(cs))
		}
		js = r.giteaJobs(t)
		done := 0
		for _, j := range js {
			if j.Status == "completed" {
				done++
			}
		}
		return len(js) == jobs && done == jobs
	})
	elapsed := time.Since(start)
	runners := map[string]bool{}
	for _, j := range js {
		if j.Conclusion != "success" {
			t.Errorf("job %d (%s) concluded %q, want success", j.ID, j.Name, j.Conclusion)
		}
		if !strings.HasPrefix(j.RunnerName, "corral-"+r.id) {
			t.Errorf("job %d ran on %q, not a runner of corral's", j.ID, j.RunnerName)
		}
		if runners[j.RunnerName] {
			t.Errorf("runner %s ran two jobs", j.RunnerName)
		}
		runners[j.RunnerName] = true
	}
	if seen == 0 {
		t.Error("never saw a container on the engine")
	}
	var names, left []string
	waitFor(t, 60*time.Second, "no runner registration and no container left", func() bool {
		var err, cerr error
		names, err = r.g.runners(r.repo)
		left, cerr = r.containers(t)
		return err == nil && cerr == nil && len(names) == 0 && len(left) == 0
	})
	t.Logf("%d jobs in containers in %s (clean after %s): %d distinct runners, up to %d containers at once",
		jobs, elapsed.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), len(runners), seen)
	p.Stop(t)
}
