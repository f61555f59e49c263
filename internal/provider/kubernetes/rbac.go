package kubernetes

import rbacv1 "k8s.io/api/rbac/v1"

// RoleRules are the rights the provider needs in each namespace it uses, as
// the rules of a Role bound to corral's user or service account (nothing
// cluster-wide), and nothing more: the tests run the provider with exactly
// these (kubetest.GrantCorral), and docs/kubernetes.md lists them
// (TestRoleRules_Documented compares).
func RoleRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		// The informer lists and watches; Create and Delete (also List's
		// force deletes).
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch", "create", "delete"}},
		// RunnerLog.
		{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}},
		// The bootstrap Secret: created with the pod, deleted with it.
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create", "delete"}},
	}
}
