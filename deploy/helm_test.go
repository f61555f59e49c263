package deploy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const (
	chartDir       = "helm/corral"
	postgresValues = "helm/examples/postgres.yaml"
	helmVersion    = "v4.3.2"
)

// helmBinary finds the helm that scripts/helm/build.sh built (CORRAL_HELM
// overrides). Missing: the test skips, or fails under CI=true.
func helmBinary(t *testing.T) string {
	t.Helper()
	path := os.Getenv("CORRAL_HELM")
	if path == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, _ := os.UserHomeDir()
			cache = filepath.Join(home, ".cache")
		}
		path = filepath.Join(cache, "corral", "helm-"+helmVersion, "helm")
	}
	if _, err := os.Stat(path); err != nil {
		msg := fmt.Sprintf("helm missing at %s (bash scripts/helm/build.sh builds it)", path)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

func helm(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	// A private helm home: no user repositories or plugins take part.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), nil
}

// render runs helm template and returns the documents by kind/name.
func render(t *testing.T, bin string, args ...string) map[string]map[string]any {
	t.Helper()
	out, err := helm(t, bin, append([]string{"template", "corral", chartDir}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]map[string]any{}
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		var d map[string]any
		if err := dec.Decode(&d); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("helm template output is not YAML: %v\n%s", err, out)
		}
		if d == nil {
			continue
		}
		kind, _ := d["kind"].(string)
		name, _ := get(d, "metadata", "name").(string)
		docs[kind+"/"+name] = d
	}
	return docs
}

// get walks maps (string keys) and lists (int keys).
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func buildCorral(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "corral")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/corral").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// checkPod asserts the hardening, probes and secret wiring of the pod
// template, and runs corral serve -check on the rendered config with the
// container's environment (secret values made up here).
func checkPod(t *testing.T, corral string, docs map[string]map[string]any, workload string) (env map[string]any) {
	t.Helper()
	w, ok := docs[workload]
	if !ok {
		t.Fatalf("no %s in the rendered chart (have %v)", workload, keys(docs))
	}
	pod := get(w, "spec", "template", "spec")
	if got := get(pod, "automountServiceAccountToken"); got != false {
		t.Errorf("automountServiceAccountToken = %v, want false", got)
	}
	for k, want := range map[string]any{"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532} {
		if got := get(pod, "securityContext", k); got != want {
			t.Errorf("pod securityContext.%s = %v, want %v", k, got, want)
		}
	}
	c := get(pod, "containers", 0)
	sc := get(c, "securityContext")
	for k, want := range map[string]any{"runAsNonRoot": true, "runAsUser": 65532, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false, "privileged": false} {
		if got := get(sc, k); got != want {
			t.Errorf("container securityContext.%s = %v, want %v", k, got, want)
		}
	}
	if drop := get(sc, "capabilities", "drop"); fmt.Sprint(drop) != "[ALL]" {
		t.Errorf("capabilities.drop = %v, want [ALL]", drop)
	}
	if add := get(sc, "capabilities", "add"); add != nil {
		t.Errorf("capabilities.add = %v, want none", add)
	}
	if p := get(c, "livenessProbe", "httpGet", "path"); p != "/healthz" {
		t.Errorf("livenessProbe path %v, want /healthz", p)
	}
	if p := get(c, "readinessProbe", "httpGet", "path"); p != "/readyz" {
		t.Errorf("readinessProbe path %v, want /readyz", p)
	}
	if a := fmt.Sprint(get(c, "args")); a != "[serve -config /etc/corral/corral.yaml]" {
		t.Errorf("args %s", a)
	}
	// Every writable path is a volume (the root file system is read-only).
	mounts := map[string]bool{}
	for _, m := range get(c, "volumeMounts").([]any) {
		mounts[get(m, "mountPath").(string)] = get(m, "readOnly") == true
	}
	if ro, ok := mounts["/var/lib/corral"]; !ok || ro {
		t.Errorf("/var/lib/corral not a writable volume: %v", mounts)
	}
	if ro, ok := mounts["/etc/corral"]; !ok || !ro {
		t.Errorf("/etc/corral not a read-only volume: %v", mounts)
	}

	// The config: a ConfigMap key that corral itself accepts.
	cmName := get(pod, "volumes", 0, "configMap", "name").(string)
	conf, _ := get(docs["ConfigMap/"+cmName], "data", "corral.yaml").(string)
	if conf == "" {
		t.Fatalf("ConfigMap %s has no corral.yaml", cmName)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "corral.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	env = map[string]any{}
	cmdEnv := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	envs, _ := get(c, "env").([]any)
	for _, e := range envs {
		name := get(e, "name").(string)
		if v := get(e, "value"); v != nil {
			t.Errorf("env %s has an inline value %v; secrets come from secretKeyRef", name, v)
		}
		ref := get(e, "valueFrom", "secretKeyRef")
		if ref == nil {
			t.Errorf("env %s is not from a Secret", name)
			continue
		}
		env[name] = ref
		val := "made-up-" + strings.ToLower(name)
		if name == "CORRAL_POSTGRES_DSN" {
			val = "postgres://corral:pw@db.example:5432/corral"
		}
		cmdEnv = append(cmdEnv, name+"="+val)
	}
	if out, err := serveCheck(corral, path, cmdEnv); err != nil {
		t.Fatalf("%v\nconfig:\n%s", err, conf)
	} else if strings.Contains(strings.ToLower(out), "warn") {
		// A secret written literally makes corral warn; the chart writes none.
		t.Errorf("corral warns about the rendered config: %s", out)
	}
	return env
}

// serveCheck runs corral serve -check: the config is parsed, validated and
// its secrets resolved, without opening the store or a listener.
func serveCheck(corral, path string, env []string) (string, error) {
	cmd := exec.Command(corral, "serve", "-check", "-config", path)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK (") {
		return string(out), fmt.Errorf("corral serve -check on the rendered config: %v\n%s", err, out)
	}
	return string(out), nil
}

func keys(m map[string]map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// TestHelmChart_Default: helm lint, then helm template with default values:
// a StatefulSet of one replica with a PVC for SQLite, one Service, the
// hardened pod, probes, and a config corral accepts.
func TestHelmChart_Default(t *testing.T) {
	bin := helmBinary(t)
	corral := buildCorral(t)
	if out, err := helm(t, bin, "lint", "--strict", chartDir); err != nil {
		t.Fatal(err)
	} else if !strings.Contains(out, "0 chart(s) failed") {
		t.Fatalf("helm lint: %s", out)
	}
	docs := render(t, bin)
	w := docs["StatefulSet/corral"]
	if w == nil {
		t.Fatalf("default values: no StatefulSet/corral (have %v)", keys(docs))
	}
	if r := get(w, "spec", "replicas"); r != 1 {
		t.Errorf("replicas %v, want 1 (SQLite)", r)
	}
	if name := get(w, "spec", "volumeClaimTemplates", 0, "metadata", "name"); name != "data" {
		t.Errorf("no data PVC: %v", get(w, "spec", "volumeClaimTemplates"))
	}
	if _, ok := docs["Deployment/corral"]; ok {
		t.Error("default values rendered a Deployment too")
	}
	checkPod(t, corral, docs, "StatefulSet/corral")
	conf := get(docs["ConfigMap/corral"], "data", "corral.yaml").(string)
	for _, want := range []string{"store: sqlite", "listen: 0.0.0.0:8080", "data_dir: /var/lib/corral", "controller_id: corral"} {
		if !strings.Contains(conf, want) {
			t.Errorf("default config lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "api_listen") {
		t.Errorf("default config has api_listen:\n%s", conf)
	}
	if _, ok := docs["Service/corral-api"]; ok {
		t.Error("default values rendered an API Service")
	}
	if _, ok := docs["ServiceMonitor/corral"]; ok {
		t.Error("default values rendered a ServiceMonitor")
	}
}

// TestHelmChart_PostgresSeparateListeners renders helm/examples/postgres.yaml:
// a Deployment of 2 replicas, the DSN and the target's secrets from Secrets
// (never in the ConfigMap), api_listen on its own Service, a ServiceMonitor
// on the API port with a bearer token from a Secret.
func TestHelmChart_PostgresSeparateListeners(t *testing.T) {
	bin := helmBinary(t)
	corral := buildCorral(t)
	if _, err := helm(t, bin, "lint", "--strict", chartDir, "-f", postgresValues); err != nil {
		t.Fatal(err)
	}
	docs := render(t, bin, "-f", postgresValues)
	w := docs["Deployment/corral"]
	if w == nil {
		t.Fatalf("postgres values: no Deployment/corral (have %v)", keys(docs))
	}
	if _, ok := docs["StatefulSet/corral"]; ok {
		t.Error("postgres values rendered a StatefulSet too")
	}
	if r := get(w, "spec", "replicas"); r != 2 {
		t.Errorf("replicas %v, want 2", r)
	}
	env := checkPod(t, corral, docs, "Deployment/corral")
	for name, secret := range map[string]string{"CORRAL_POSTGRES_DSN": "corral-db", "ACME_WEBHOOK_SECRET": "corral-acme", "ACME_TOKEN": "corral-acme"} {
		if got := get(env[name], "name"); got != secret {
			t.Errorf("env %s from Secret %v, want %s", name, got, secret)
		}
	}
	conf := get(docs["ConfigMap/corral"], "data", "corral.yaml").(string)
	for _, want := range []string{"store: env:CORRAL_POSTGRES_DSN", "api_listen: 0.0.0.0:8081", "webhook_secret: env:ACME_WEBHOOK_SECRET", "token: env:ACME_TOKEN"} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "postgres://") {
		t.Errorf("the DSN is inlined in the ConfigMap:\n%s", conf)
	}
	ports := map[any]any{}
	for _, p := range get(w, "spec", "template", "spec", "containers", 0, "ports").([]any) {
		ports[get(p, "name")] = get(p, "containerPort")
	}
	if ports["http"] != 8080 || ports["api"] != 8081 {
		t.Errorf("container ports %v, want http 8080 and api 8081", ports)
	}
	if tp := get(docs["Service/corral-api"], "spec", "ports", 0, "targetPort"); tp != "api" {
		t.Errorf("API Service targetPort %v, want api", tp)
	}
	if ty := get(docs["Service/corral"], "spec", "type"); ty != "LoadBalancer" {
		t.Errorf("webhook Service type %v, want LoadBalancer", ty)
	}
	sm := docs["ServiceMonitor/corral"]
	if p := get(sm, "spec", "endpoints", 0, "port"); p != "api" {
		t.Errorf("ServiceMonitor port %v, want api", p)
	}
	if n := get(sm, "spec", "endpoints", 0, "bearerTokenSecret", "name"); n != "corral-metrics" {
		t.Errorf("ServiceMonitor token Secret %v", n)
	}
	if c := get(sm, "spec", "selector", "matchLabels", "app.kubernetes.io/component"); c != get(docs["Service/corral-api"], "metadata", "labels", "app.kubernetes.io/component") {
		t.Errorf("ServiceMonitor selects component %v, the API Service has another", c)
	}

	// The checks can fail: postgres without a DSN Secret is refused, and
	// a config corral rejects is caught by serve -check.
	if _, err := helm(t, bin, "template", "corral", chartDir, "--set", "store.type=postgres"); err == nil || !strings.Contains(err.Error(), "existingSecret") {
		t.Errorf("postgres without existingSecret rendered: %v", err)
	}
	bad := render(t, bin, "--set", "config.bogus_key=1")
	path := filepath.Join(t.TempDir(), "corral.yaml")
	if err := os.WriteFile(path, []byte(get(bad["ConfigMap/corral"], "data", "corral.yaml").(string)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := serveCheck(corral, path, []string{"PATH=" + os.Getenv("PATH")}); err == nil || !strings.Contains(out, "bogus_key") {
		t.Errorf("corral serve -check accepted an unknown key: %v %s", err, out)
	}
	// A target's secret env var missing from the pod: serve -check names it.
	conf = get(docs["ConfigMap/corral"], "data", "corral.yaml").(string)
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := serveCheck(corral, path, []string{"PATH=" + os.Getenv("PATH"), "CORRAL_POSTGRES_DSN=postgres://db/corral", "ACME_TOKEN=x"}); err == nil || !strings.Contains(out, "ACME_WEBHOOK_SECRET") {
		t.Errorf("corral serve -check accepted a missing env secret: %v %s", err, out)
	}
}
