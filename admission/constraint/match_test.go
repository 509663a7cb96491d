package constraint

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	mtPodGVK         = schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	mtDeploymentGVK  = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	mtNamespaceGVK   = schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}
	mtClusterRoleGVK = schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole"}
)

// object builds {"metadata": {"name": name, "labels": labels}}; kv is
// alternating label keys and values.
func mtObject(name string, kv ...string) map[string]any {
	md := map[string]any{"name": name}
	if len(kv) > 0 {
		l := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			l[kv[i]] = kv[i+1]
		}
		md["labels"] = l
	}
	return map[string]any{"metadata": md}
}

// namespaced is a CREATE of a namespaced object whose Namespace is known.
func mtNamespaced(gvk schema.GroupVersionKind, ns string, obj map[string]any, nsObj map[string]any) *Target {
	return &Target{GVK: gvk, Namespace: ns, Name: mtName(obj), Object: obj, NamespaceObject: nsObj}
}

// pod is a CREATE of Pod "p" (labels kv) in namespace ns (no labels).
func mtPod(ns string, kv ...string) *Target {
	return mtNamespaced(mtPodGVK, ns, mtObject("p", kv...), mtObject(ns))
}

// deployment is a CREATE of Deployment "d" in namespace ns (no labels).
func mtDeployment(ns string) *Target {
	return mtNamespaced(mtDeploymentGVK, ns, mtObject("d"), mtObject(ns))
}

// clusterRole is a CREATE of the cluster-scoped ClusterRole "r".
func mtClusterRole(kv ...string) *Target {
	return &Target{GVK: mtClusterRoleGVK, Name: "r", Object: mtObject("r", kv...)}
}

// namespace is a CREATE of Namespace name (labels kv): its own NamespaceObject.
func mtNamespace(name string, kv ...string) *Target {
	o := mtObject(name, kv...)
	return &Target{GVK: mtNamespaceGVK, Name: name, Object: o, NamespaceObject: o}
}

func mtName(obj map[string]any) string {
	if obj == nil {
		return ""
	}
	n, _ := obj["metadata"].(map[string]any)["name"].(string)
	return n
}

func mtSel(kv ...string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{MatchLabels: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		s.MatchLabels[kv[i]] = kv[i+1]
	}
	return s
}

func mtExpr(key string, op metav1.LabelSelectorOperator, values ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

type mtCase struct {
	name   string
	match  *Match
	target *Target
	want   bool
	// reason, when set, must equal the reason returned (only checked when
	// want is false).
	reason string
	// err, when set, means an error whose text contains it is expected.
	err string
}

func mtRun(t *testing.T, cases []mtCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ok, reason, err := tc.match.Matches(tc.target)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Matches() error = %v, want one containing %q", err, tc.err)
				}
				if ok {
					t.Errorf("Matches() = true with an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Matches() unexpected error: %v", err)
			}
			if ok != tc.want {
				t.Fatalf("Matches() = %v (reason %q), want %v", ok, reason, tc.want)
			}
			if ok && reason != "" {
				t.Errorf("Matches() = true with reason %q", reason)
			}
			if !ok && reason == "" {
				t.Errorf("Matches() = false without a reason")
			}
			if !ok && tc.reason != "" && reason != tc.reason {
				t.Errorf("reason = %q, want %q", reason, tc.reason)
			}
		})
	}
}

func TestMatchNil(t *testing.T) {
	var m *Match
	ok, reason, err := m.Matches(mtPod("dev"))
	if !ok || reason != "" || err != nil {
		t.Fatalf("nil Match: got (%v, %q, %v), want (true, \"\", nil)", ok, reason, err)
	}
}

func TestMatchKinds(t *testing.T) {
	mtRun(t, []mtCase{
		{name: "empty match selects everything", match: &Match{}, target: mtDeployment("dev"), want: true},
		{name: "empty kinds list selects all kinds", match: &Match{Kinds: []KindSelector{}}, target: mtClusterRole(), want: true},
		{name: "core group Pod", match: &Match{Kinds: []KindSelector{{APIGroups: []string{""}, Kinds: []string{"Pod"}}}}, target: mtPod("dev"), want: true},
		{
			name:   "core group Pod excludes apps Deployment",
			match:  &Match{Kinds: []KindSelector{{APIGroups: []string{""}, Kinds: []string{"Pod"}}}},
			target: mtDeployment("dev"),
			reason: `kinds: apps/Deployment not in [""/Pod]`,
		},
		{
			name:   "core group does not match a named group with the same kind",
			match:  &Match{Kinds: []KindSelector{{APIGroups: []string{""}, Kinds: []string{"Deployment"}}}},
			target: mtDeployment("dev"),
			reason: `kinds: apps/Deployment not in [""/Deployment]`,
		},
		{
			name:   "named group does not match the core group",
			match:  &Match{Kinds: []KindSelector{{APIGroups: []string{"apps"}, Kinds: []string{"Pod"}}}},
			target: mtPod("dev"),
			reason: `kinds: ""/Pod not in [apps/Pod]`,
		},
		{name: "wildcard group", match: &Match{Kinds: []KindSelector{{APIGroups: []string{"*"}, Kinds: []string{"Deployment"}}}}, target: mtDeployment("dev"), want: true},
		{name: "wildcard group matches core group", match: &Match{Kinds: []KindSelector{{APIGroups: []string{"*"}, Kinds: []string{"Pod"}}}}, target: mtPod("dev"), want: true},
		{name: "wildcard kind", match: &Match{Kinds: []KindSelector{{APIGroups: []string{"apps"}, Kinds: []string{"*"}}}}, target: mtDeployment("dev"), want: true},
		{
			name:   "wildcard kind still needs the group",
			match:  &Match{Kinds: []KindSelector{{APIGroups: []string{"apps"}, Kinds: []string{"*"}}}},
			target: mtPod("dev"),
			reason: `kinds: ""/Pod not in [apps/*]`,
		},
		{
			name:   "wildcard group still needs the kind",
			match:  &Match{Kinds: []KindSelector{{APIGroups: []string{"*"}, Kinds: []string{"Pod"}}}},
			target: mtDeployment("dev"),
			reason: `kinds: apps/Deployment not in [*/Pod]`,
		},
		{name: "no apiGroups means any group", match: &Match{Kinds: []KindSelector{{Kinds: []string{"Deployment"}}}}, target: mtDeployment("dev"), want: true},
		{name: "no kinds means any kind", match: &Match{Kinds: []KindSelector{{APIGroups: []string{"apps"}}}}, target: mtDeployment("dev"), want: true},
		{name: "one of several entries", match: &Match{Kinds: []KindSelector{{APIGroups: []string{""}, Kinds: []string{"Pod"}}, {APIGroups: []string{"apps"}, Kinds: []string{"Deployment", "StatefulSet"}}}}, target: mtDeployment("dev"), want: true},
		{
			name:   "group and kind must come from the same entry",
			match:  &Match{Kinds: []KindSelector{{APIGroups: []string{"apps"}, Kinds: []string{"Pod"}}, {APIGroups: []string{""}, Kinds: []string{"Deployment"}}}},
			target: mtDeployment("dev"),
			reason: `kinds: apps/Deployment not in [apps/Pod ""/Deployment]`,
		},
		{
			name:   "kind is case sensitive",
			match:  &Match{Kinds: []KindSelector{{APIGroups: []string{""}, Kinds: []string{"pod"}}}},
			target: mtPod("dev"),
			reason: `kinds: ""/Pod not in [""/pod]`,
		},
	})
}

func TestMatchScope(t *testing.T) {
	unknownNS := &Target{GVK: mtPodGVK, Namespace: "ghost", Name: "p", Object: mtObject("p")}
	mtRun(t, []mtCase{
		{name: "* selects namespaced", match: &Match{Scope: "*"}, target: mtPod("dev"), want: true},
		{name: "* selects cluster-scoped", match: &Match{Scope: "*"}, target: mtClusterRole(), want: true},
		{name: "empty selects cluster-scoped", match: &Match{}, target: mtClusterRole(), want: true},
		{name: "Cluster selects cluster-scoped", match: &Match{Scope: "Cluster"}, target: mtClusterRole(), want: true},
		{name: "Cluster selects a Namespace", match: &Match{Scope: "Cluster"}, target: mtNamespace("dev"), want: true},
		{name: "Cluster excludes namespaced", match: &Match{Scope: "Cluster"}, target: mtPod("dev"), reason: `scope: Cluster but object is namespaced (namespace "dev")`},
		{name: "Cluster excludes namespaced with unknown Namespace", match: &Match{Scope: "Cluster"}, target: unknownNS, reason: `scope: Cluster but object is namespaced (namespace "ghost")`},
		{name: "Namespaced selects namespaced", match: &Match{Scope: "Namespaced"}, target: mtPod("dev"), want: true},
		{name: "Namespaced selects namespaced with unknown Namespace", match: &Match{Scope: "Namespaced"}, target: unknownNS, want: true},
		{name: "Namespaced excludes cluster-scoped", match: &Match{Scope: "Namespaced"}, target: mtClusterRole(), reason: "scope: Namespaced but object is cluster-scoped"},
		{name: "Namespaced excludes a Namespace", match: &Match{Scope: "Namespaced"}, target: mtNamespace("dev"), reason: "scope: Namespaced but object is cluster-scoped"},
		{name: "unknown scope (typo) selects everything", match: &Match{Scope: "cluster"}, target: mtPod("dev"), want: true},
	})
}

func TestMatchNamespaces(t *testing.T) {
	// The namespace comes from metadata.namespace when present.
	fromMetadata := &Target{GVK: mtPodGVK, Name: "p", Object: map[string]any{"metadata": map[string]any{"name": "p", "namespace": "prod"}}}
	mtRun(t, []mtCase{
		{name: "exact", match: &Match{Namespaces: []string{"prod", "dev"}}, target: mtPod("dev"), want: true},
		{name: "exact miss", match: &Match{Namespaces: []string{"prod"}}, target: mtPod("dev"), reason: `namespaces: "dev" not in ["prod"]`},
		{name: "exact is not a prefix", match: &Match{Namespaces: []string{"de"}}, target: mtPod("dev"), reason: `namespaces: "dev" not in ["de"]`},
		{name: "prefix glob", match: &Match{Namespaces: []string{"kube-*"}}, target: mtPod("kube-system"), want: true},
		{name: "prefix glob miss", match: &Match{Namespaces: []string{"kube-*"}}, target: mtPod("my-kube-system"), reason: `namespaces: "my-kube-system" not in ["kube-*"]`},
		{name: "suffix glob", match: &Match{Namespaces: []string{"*-system"}}, target: mtPod("gatekeeper-system"), want: true},
		{name: "suffix glob miss", match: &Match{Namespaces: []string{"*-system"}}, target: mtPod("system-dev"), reason: `namespaces: "system-dev" not in ["*-system"]`},
		{name: "both ends glob is contains", match: &Match{Namespaces: []string{"*team*"}}, target: mtPod("a-team-b"), want: true},
		{name: "star alone selects all", match: &Match{Namespaces: []string{"*"}}, target: mtPod("dev"), want: true},
		{name: "star in the middle is literal", match: &Match{Namespaces: []string{"kube*system"}}, target: mtPod("kube-system"), reason: `namespaces: "kube-system" not in ["kube*system"]`},
		{name: "cluster-scoped object is not excluded by namespaces", match: &Match{Namespaces: []string{"prod"}}, target: mtClusterRole(), want: true},
		{name: "a Namespace is matched by its own name", match: &Match{Namespaces: []string{"prod"}}, target: mtNamespace("prod"), want: true},
		{name: "a Namespace is excluded by its own name", match: &Match{Namespaces: []string{"prod"}}, target: mtNamespace("dev"), reason: `namespaces: "dev" not in ["prod"]`},
		{name: "namespace from metadata", match: &Match{Namespaces: []string{"prod"}}, target: fromMetadata, want: true},
		{name: "namespace from metadata miss", match: &Match{Namespaces: []string{"dev"}}, target: fromMetadata, reason: `namespaces: "prod" not in ["dev"]`},
		{
			name:   "unknown Namespace still uses the request namespace",
			match:  &Match{Namespaces: []string{"dev"}},
			target: &Target{GVK: mtPodGVK, Namespace: "ghost", Name: "p", Object: mtObject("p")},
			reason: `namespaces: "ghost" not in ["dev"]`,
		},
	})
}

func TestMatchExcludedNamespaces(t *testing.T) {
	mtRun(t, []mtCase{
		{name: "exact", match: &Match{ExcludedNamespaces: []string{"kube-system"}}, target: mtPod("kube-system"), reason: `excludedNamespaces: "kube-system" matches "kube-system"`},
		{name: "exact miss", match: &Match{ExcludedNamespaces: []string{"kube-system"}}, target: mtPod("dev"), want: true},
		{name: "prefix glob", match: &Match{ExcludedNamespaces: []string{"kube-*"}}, target: mtPod("kube-system"), reason: `excludedNamespaces: "kube-system" matches "kube-*"`},
		{name: "prefix glob miss", match: &Match{ExcludedNamespaces: []string{"kube-*"}}, target: mtPod("notkube-system"), want: true},
		{name: "suffix glob", match: &Match{ExcludedNamespaces: []string{"dev", "*-system"}}, target: mtPod("gatekeeper-system"), reason: `excludedNamespaces: "gatekeeper-system" matches "*-system"`},
		{name: "suffix glob miss", match: &Match{ExcludedNamespaces: []string{"*-system"}}, target: mtPod("system-x"), want: true},
		{name: "star in the middle is literal", match: &Match{ExcludedNamespaces: []string{"kube*system"}}, target: mtPod("kube-system"), want: true},
		{name: "cluster-scoped object is not excluded", match: &Match{ExcludedNamespaces: []string{"*"}}, target: mtClusterRole(), want: true},
		{name: "a Namespace is excluded by its own name", match: &Match{ExcludedNamespaces: []string{"kube-*"}}, target: mtNamespace("kube-public"), reason: `excludedNamespaces: "kube-public" matches "kube-*"`},
		{name: "a Namespace not excluded", match: &Match{ExcludedNamespaces: []string{"kube-*"}}, target: mtNamespace("dev"), want: true},
		{name: "namespaces and excludedNamespaces both apply", match: &Match{Namespaces: []string{"kube-*"}, ExcludedNamespaces: []string{"kube-system"}}, target: mtPod("kube-system"), reason: `excludedNamespaces: "kube-system" matches "kube-system"`},
		{name: "namespaces and excludedNamespaces both hold", match: &Match{Namespaces: []string{"kube-*"}, ExcludedNamespaces: []string{"kube-system"}}, target: mtPod("kube-public"), want: true},
	})
}

func TestMatchLabelSelector(t *testing.T) {
	update := func(newObj, oldObj map[string]any) *Target {
		return &Target{GVK: mtPodGVK, Namespace: "dev", Name: "p", Object: newObj, OldObject: oldObj, NamespaceObject: mtObject("dev")}
	}
	del := func(oldObj map[string]any) *Target {
		return &Target{GVK: mtPodGVK, Namespace: "dev", Name: "p", OldObject: oldObj, NamespaceObject: mtObject("dev")}
	}
	mtRun(t, []mtCase{
		{name: "matchLabels", match: &Match{LabelSelector: mtSel("app", "web")}, target: mtPod("dev", "app", "web", "tier", "1"), want: true},
		{name: "matchLabels wrong value", match: &Match{LabelSelector: mtSel("app", "web")}, target: mtPod("dev", "app", "db"), reason: `labelSelector: labels of Pod "p" do not match app=web`},
		{name: "matchLabels no labels", match: &Match{LabelSelector: mtSel("app", "web")}, target: mtPod("dev"), reason: `labelSelector: labels of Pod "p" do not match app=web`},
		{name: "matchLabels all must hold", match: &Match{LabelSelector: mtSel("app", "web", "tier", "1")}, target: mtPod("dev", "app", "web"), want: false},
		{name: "empty selector selects everything", match: &Match{LabelSelector: &metav1.LabelSelector{}}, target: mtPod("dev"), want: true},
		{name: "In", match: &Match{LabelSelector: mtExpr("env", metav1.LabelSelectorOpIn, "prod", "stage")}, target: mtPod("dev", "env", "stage"), want: true},
		{name: "In miss", match: &Match{LabelSelector: mtExpr("env", metav1.LabelSelectorOpIn, "prod")}, target: mtPod("dev", "env", "dev"), reason: `labelSelector: labels of Pod "p" do not match env in (prod)`},
		{name: "NotIn", match: &Match{LabelSelector: mtExpr("env", metav1.LabelSelectorOpNotIn, "prod")}, target: mtPod("dev", "env", "dev"), want: true},
		{name: "NotIn missing label", match: &Match{LabelSelector: mtExpr("env", metav1.LabelSelectorOpNotIn, "prod")}, target: mtPod("dev"), want: true},
		{name: "NotIn miss", match: &Match{LabelSelector: mtExpr("env", metav1.LabelSelectorOpNotIn, "prod")}, target: mtPod("dev", "env", "prod"), want: false},
		{name: "Exists", match: &Match{LabelSelector: mtExpr("owner", metav1.LabelSelectorOpExists)}, target: mtPod("dev", "owner", "me"), want: true},
		{name: "Exists miss", match: &Match{LabelSelector: mtExpr("owner", metav1.LabelSelectorOpExists)}, target: mtPod("dev"), reason: `labelSelector: labels of Pod "p" do not match owner`},
		{name: "DoesNotExist", match: &Match{LabelSelector: mtExpr("owner", metav1.LabelSelectorOpDoesNotExist)}, target: mtPod("dev"), want: true},
		{name: "DoesNotExist miss", match: &Match{LabelSelector: mtExpr("owner", metav1.LabelSelectorOpDoesNotExist)}, target: mtPod("dev", "owner", "me"), want: false},
		{
			name: "matchLabels and matchExpressions are ANDed",
			match: &Match{LabelSelector: &metav1.LabelSelector{
				MatchLabels:      map[string]string{"app": "web"},
				MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: []string{"prod"}}},
			}},
			target: mtPod("dev", "app", "web", "env", "dev"),
			want:   false,
		},
		{name: "applies to cluster-scoped objects", match: &Match{LabelSelector: mtSel("a", "b")}, target: mtClusterRole("a", "b"), want: true},
		{name: "applies to cluster-scoped objects miss", match: &Match{LabelSelector: mtSel("a", "b")}, target: mtClusterRole(), want: false},
		{name: "applies to a Namespace's own labels", match: &Match{LabelSelector: mtSel("a", "b")}, target: mtNamespace("dev", "a", "b"), want: true},
		// UPDATE: upstream matchAny runs the whole match against the object,
		// then the old object: either one matching is enough.
		{name: "UPDATE new labels match", match: &Match{LabelSelector: mtSel("app", "web")}, target: update(mtObject("p", "app", "web"), mtObject("p")), want: true},
		{name: "UPDATE only old labels match", match: &Match{LabelSelector: mtSel("app", "web")}, target: update(mtObject("p"), mtObject("p", "app", "web")), want: true},
		{
			name:   "UPDATE neither matches",
			match:  &Match{LabelSelector: mtSel("app", "web")},
			target: update(mtObject("p", "app", "db"), mtObject("p", "app", "cache")),
			reason: `labelSelector: labels of Pod "p" do not match app=web`,
		},
		{
			name:   "UPDATE different reasons are both reported",
			match:  &Match{LabelSelector: mtSel("app", "web"), Name: "p"},
			target: update(mtObject("q", "app", "web"), mtObject("p")),
			reason: `object: name: "q" does not match "p"; oldObject: labelSelector: labels of Pod "p" do not match app=web`,
		},
		// DELETE: no object, the old object is matched.
		{name: "DELETE old labels match", match: &Match{LabelSelector: mtSel("app", "web")}, target: del(mtObject("p", "app", "web")), want: true},
		{name: "DELETE old labels miss", match: &Match{LabelSelector: mtSel("app", "web")}, target: del(mtObject("p")), reason: `labelSelector: labels of Pod "p" do not match app=web`},
		{name: "neither object nor old object", match: &Match{LabelSelector: mtSel("app", "web")}, target: del(nil), err: "neither object nor oldObject"},
		{name: "neither object nor old object, empty match", match: &Match{}, target: del(nil), err: "neither object nor oldObject"},
	})
}

func TestMatchNamespaceSelector(t *testing.T) {
	inNS := func(nsLabels ...string) *Target {
		return mtNamespaced(mtPodGVK, "dev", mtObject("p", "env", "prod"), mtObject("dev", nsLabels...))
	}
	mtRun(t, []mtCase{
		{name: "namespace labels match", match: &Match{NamespaceSelector: mtSel("env", "prod")}, target: inNS("env", "prod"), want: true},
		{
			name:   "namespace labels do not match (object labels are irrelevant)",
			match:  &Match{NamespaceSelector: mtSel("env", "prod")},
			target: inNS("env", "dev"),
			reason: `namespaceSelector: labels of namespace "dev" do not match env=prod`,
		},
		{name: "matchExpressions on namespace", match: &Match{NamespaceSelector: mtExpr("team", metav1.LabelSelectorOpExists)}, target: inNS("team", "x"), want: true},
		{name: "matchExpressions on namespace miss", match: &Match{NamespaceSelector: mtExpr("team", metav1.LabelSelectorOpNotIn, "x")}, target: inNS("team", "x"), reason: `namespaceSelector: labels of namespace "dev" do not match team notin (x)`},
		{name: "a Namespace is matched on its own labels", match: &Match{NamespaceSelector: mtSel("env", "prod")}, target: mtNamespace("prod", "env", "prod"), want: true},
		{name: "a Namespace is excluded on its own labels", match: &Match{NamespaceSelector: mtSel("env", "prod")}, target: mtNamespace("dev", "env", "dev"), reason: `namespaceSelector: labels of namespace "dev" do not match env=prod`},
		{
			name:   "a Namespace does not need its NamespaceObject",
			match:  &Match{NamespaceSelector: mtSel("env", "prod")},
			target: &Target{GVK: mtNamespaceGVK, Name: "prod", Object: mtObject("prod", "env", "prod")},
			want:   true,
		},
		{
			name:  "a Namespace UPDATE matches on its old labels",
			match: &Match{NamespaceSelector: mtSel("env", "prod")},
			target: &Target{GVK: mtNamespaceGVK, Namespace: "prod", Name: "prod",
				Object: mtObject("prod", "env", "dev"), OldObject: mtObject("prod", "env", "prod"), NamespaceObject: mtObject("prod", "env", "dev")},
			want: true,
		},
		{name: "cluster-scoped object always matches", match: &Match{NamespaceSelector: mtSel("env", "prod")}, target: mtClusterRole(), want: true},
		{
			name:   "unknown Namespace of a namespaced object is an error",
			match:  &Match{NamespaceSelector: mtSel("env", "prod")},
			target: &Target{GVK: mtPodGVK, Namespace: "ghost", Name: "p", Object: mtObject("p")},
			err:    `namespaceSelector: namespace "ghost" of the namespaced object is unknown`,
		},
		{
			name:   "unknown Namespace is not an error without a namespaceSelector",
			match:  &Match{LabelSelector: mtSel("app", "web")},
			target: &Target{GVK: mtPodGVK, Namespace: "ghost", Name: "p", Object: mtObject("p", "app", "web")},
			want:   true,
		},
	})
}

func TestMatchName(t *testing.T) {
	generated := &Target{GVK: mtPodGVK, Namespace: "dev", Object: map[string]any{"metadata": map[string]any{"generateName": "web-"}}, NamespaceObject: mtObject("dev")}
	mtRun(t, []mtCase{
		{name: "empty name selects all", match: &Match{}, target: mtPod("dev"), want: true},
		{name: "exact", match: &Match{Name: "p"}, target: mtPod("dev"), want: true},
		{name: "exact miss", match: &Match{Name: "q"}, target: mtPod("dev"), reason: `name: "p" does not match "q"`},
		{name: "prefix glob", match: &Match{Name: "web-*"}, target: mtNamespaced(mtPodGVK, "dev", mtObject("web-1"), mtObject("dev")), want: true},
		{name: "prefix glob miss", match: &Match{Name: "web-*"}, target: mtNamespaced(mtPodGVK, "dev", mtObject("db-1"), mtObject("dev")), reason: `name: "db-1" does not match "web-*"`},
		{name: "suffix glob", match: &Match{Name: "*-pod"}, target: mtNamespaced(mtPodGVK, "dev", mtObject("a-pod"), mtObject("dev")), want: true},
		{name: "suffix glob miss", match: &Match{Name: "*-pod"}, target: mtNamespaced(mtPodGVK, "dev", mtObject("pod-a"), mtObject("dev")), want: false},
		{name: "star in the middle is literal", match: &Match{Name: "a*b"}, target: mtNamespaced(mtPodGVK, "dev", mtObject("axb"), mtObject("dev")), want: false},
		{name: "name of a cluster-scoped object", match: &Match{Name: "r"}, target: mtClusterRole(), want: true},
		{name: "generateName with a prefix glob", match: &Match{Name: "web-*"}, target: generated, want: true},
		{name: "generateName with a suffix glob never matches", match: &Match{Name: "*-"}, target: generated, reason: `name: generateName "web-" does not match "*-"`},
		{name: "generateName with an exact name never matches", match: &Match{Name: "web-"}, target: generated, want: false},
	})
}

func TestMatchCombined(t *testing.T) {
	all := &Match{
		Kinds:              []KindSelector{{APIGroups: []string{""}, Kinds: []string{"Pod"}}},
		Scope:              "Namespaced",
		Namespaces:         []string{"team-*"},
		ExcludedNamespaces: []string{"*-sandbox"},
		LabelSelector:      mtSel("app", "web"),
		NamespaceSelector:  mtSel("env", "prod"),
		Name:               "web-*",
	}
	target := func(gvk schema.GroupVersionKind, ns, name string, labels []string, nsLabels ...string) *Target {
		return mtNamespaced(gvk, ns, mtObject(name, labels...), mtObject(ns, nsLabels...))
	}
	web := []string{"app", "web"}
	mtRun(t, []mtCase{
		{name: "all criteria hold", match: all, target: target(mtPodGVK, "team-a", "web-1", web, "env", "prod"), want: true},
		{name: "kind fails", match: all, target: target(mtDeploymentGVK, "team-a", "web-1", web, "env", "prod"), reason: `kinds: apps/Deployment not in [""/Pod]`},
		{name: "scope fails", match: all, target: &Target{GVK: mtPodGVK, Name: "web-1", Object: mtObject("web-1", web...)}, reason: "scope: Namespaced but object is cluster-scoped"},
		{name: "namespaces fails", match: all, target: target(mtPodGVK, "ops", "web-1", web, "env", "prod"), reason: `namespaces: "ops" not in ["team-*"]`},
		{name: "excludedNamespaces fails", match: all, target: target(mtPodGVK, "team-sandbox", "web-1", web, "env", "prod"), reason: `excludedNamespaces: "team-sandbox" matches "*-sandbox"`},
		{name: "labelSelector fails", match: all, target: target(mtPodGVK, "team-a", "web-1", nil, "env", "prod"), reason: `labelSelector: labels of Pod "web-1" do not match app=web`},
		{name: "namespaceSelector fails", match: all, target: target(mtPodGVK, "team-a", "web-1", web, "env", "dev"), reason: `namespaceSelector: labels of namespace "team-a" do not match env=prod`},
		{name: "name fails", match: all, target: target(mtPodGVK, "team-a", "db-1", web, "env", "prod"), reason: `name: "db-1" does not match "web-*"`},
		// Upstream order: kinds, scope, namespaces, excludedNamespaces,
		// labelSelector, namespaceSelector, name; the first failure wins.
		{name: "first failing criterion is reported", match: all, target: target(mtDeploymentGVK, "ops", "db-1", nil, "env", "dev"), reason: `kinds: apps/Deployment not in [""/Pod]`},
		{
			name:   "namespaces is reported before labelSelector",
			match:  all,
			target: target(mtPodGVK, "ops", "db-1", nil, "env", "dev"),
			reason: `namespaces: "ops" not in ["team-*"]`,
		},
	})
}

func TestMatchInvalidSelector(t *testing.T) {
	bogus := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: "Bogus", Values: []string{"x"}}}}
	inWithoutValues := mtExpr("env", metav1.LabelSelectorOpIn)
	badKey := mtSel("not a key!", "x")
	mtRun(t, []mtCase{
		{name: "labelSelector unknown operator", match: &Match{LabelSelector: bogus}, target: mtPod("dev"), err: "labelSelector: "},
		{name: "labelSelector In without values", match: &Match{LabelSelector: inWithoutValues}, target: mtPod("dev"), err: "labelSelector: "},
		{name: "labelSelector invalid key", match: &Match{LabelSelector: badKey}, target: mtPod("dev"), err: "labelSelector: "},
		{name: "labelSelector error on DELETE", match: &Match{LabelSelector: bogus}, target: &Target{GVK: mtPodGVK, Namespace: "dev", OldObject: mtObject("p"), NamespaceObject: mtObject("dev")}, err: "labelSelector: "},
		{name: "namespaceSelector unknown operator", match: &Match{NamespaceSelector: bogus}, target: mtPod("dev"), err: "namespaceSelector: "},
		{name: "namespaceSelector invalid on a Namespace", match: &Match{NamespaceSelector: bogus}, target: mtNamespace("dev"), err: "namespaceSelector: "},
		// As upstream: criteria are evaluated in order and stop at the first
		// that fails, and a cluster-scoped object passes namespaceSelector
		// before it is parsed, so these are not errors.
		{name: "invalid labelSelector after a kinds mismatch", match: &Match{Kinds: []KindSelector{{Kinds: []string{"Deployment"}}}, LabelSelector: bogus}, target: mtPod("dev"), want: false},
		{name: "invalid namespaceSelector on a cluster-scoped object", match: &Match{NamespaceSelector: bogus}, target: mtClusterRole(), want: true},
	})
}

func TestMatchSourceGenerated(t *testing.T) {
	target := &Target{GVK: schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "a", Name: "p",
		Object: map[string]any{"metadata": map[string]any{"name": "p", "namespace": "a"}}}
	for _, tc := range []struct {
		source string
		want   bool
	}{{"", true}, {"All", true}, {"Original", true}, {"Generated", false}} {
		ok, reason, err := (&Match{Source: tc.source}).Matches(target)
		if err != nil || ok != tc.want {
			t.Errorf("source %q: Matches = %v (%q, %v), want %v", tc.source, ok, reason, err, tc.want)
		}
	}
}
