package kubernetes_test

import (
	"os"
	"regexp"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/corral-ci/corral/internal/provider/kubernetes"
)

// TestRoleRules_Documented: the Role docs/kubernetes.md shows is
// RoleRules, the one the tests grant.
func TestRoleRules_Documented(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/kubernetes.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(rules:\n.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("no yaml block starting with rules: in docs/kubernetes.md")
	}
	var role struct {
		Rules []struct {
			APIGroups []string `yaml:"apiGroups"`
			Resources []string `yaml:"resources"`
			Verbs     []string `yaml:"verbs"`
		} `yaml:"rules"`
	}
	if err := yaml.Unmarshal(m[1], &role); err != nil {
		t.Fatal(err)
	}
	want := kubernetes.RoleRules()
	if len(role.Rules) != len(want) {
		t.Fatalf("docs list %d rules, RoleRules %d", len(role.Rules), len(want))
	}
	for i, r := range role.Rules {
		w := want[i]
		if !slices.Equal(r.APIGroups, w.APIGroups) || !slices.Equal(r.Resources, w.Resources) || !slices.Equal(r.Verbs, w.Verbs) {
			t.Errorf("docs rule %d = %+v, RoleRules has %+v", i, r, w)
		}
	}
}
