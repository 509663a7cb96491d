package constraint

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

func configObject(t *testing.T, spec string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	doc := "apiVersion: config.gatekeeper.sh/v1alpha1\nkind: Config\nmetadata:\n  name: config\n  namespace: gatekeeper-system\nspec:\n" + spec
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

var (
	podGVK       = schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	namespaceGVK = schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}
	deployGVK    = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	roleGVK      = schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole"}
)

func TestExclusions(t *testing.T) {
	x, errs := ParseExclusions(configObject(t, `  match:
  - excludedNamespaces: ["kube-*", "*-system", "exact"]
    processes: ["*"]
  - excludedNamespaces: ["audit-only"]
    processes: ["audit"]
  - excludedNamespaces: ["mutation-only"]
    processes: ["mutation-webhook"]
  - kinds: ["Deployment"]
    apiGroups: ["apps"]
    excludedNamespaces: ["deploys-*"]
    processes: ["webhook", "sync"]
  - namespaceSelector:
      matchLabels: {tier: infra}
    processes: ["webhook"]
`))
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	for _, tc := range []struct {
		name      string
		process   Process
		gvk       schema.GroupVersionKind
		obj, ns   string
		nsLabels  map[string]string
		excluded  bool
		wantMatch string
	}{
		{"prefix glob, every process", ProcessWebhook, podGVK, "p", "kube-system", nil, true, `"kube-system" matches "kube-*"`},
		{"suffix glob", ProcessSync, podGVK, "p", "gatekeeper-system", nil, true, `matches "*-system"`},
		{"* covers mutation", ProcessMutation, podGVK, "p", "exact", nil, true, "spec.match[0]"},
		{"other namespace", ProcessWebhook, podGVK, "p", "default", nil, false, ""},
		{"a Namespace by its own name", ProcessWebhook, namespaceGVK, "kube-public", "", nil, true, `"kube-public"`},
		{"cluster-scoped object", ProcessWebhook, roleGVK, "r", "", nil, false, ""},
		{"audit only: audit", ProcessAudit, podGVK, "p", "audit-only", nil, true, "spec.match[1]"},
		{"audit only: webhook", ProcessWebhook, podGVK, "p", "audit-only", nil, false, ""},
		{"mutation only: mutation", ProcessMutation, podGVK, "p", "mutation-only", nil, true, "process mutation-webhook"},
		{"mutation only: webhook", ProcessWebhook, podGVK, "p", "mutation-only", nil, false, ""},
		{"kind and namespace", ProcessWebhook, deployGVK, "d", "deploys-a", nil, true, `kinds has "Deployment"`},
		{"kind matches, namespace not", ProcessWebhook, deployGVK, "d", "other", nil, false, ""},
		{"namespace matches, kind not", ProcessWebhook, podGVK, "p", "deploys-a", nil, false, ""},
		{"namespaceSelector", ProcessWebhook, podGVK, "p", "infra-a", map[string]string{"tier": "infra"}, true, `namespaceSelector "tier=infra"`},
		{"namespaceSelector, labels unknown", ProcessWebhook, podGVK, "p", "infra-a", nil, false, ""},
		{"namespaceSelector, other process", ProcessAudit, podGVK, "p", "infra-a", map[string]string{"tier": "infra"}, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := x.Excluded(tc.process, tc.gvk, tc.obj, tc.ns, tc.nsLabels)
			if got != tc.excluded {
				t.Fatalf("Excluded = %v (%s), want %v", got, why, tc.excluded)
			}
			if !strings.Contains(why, tc.wantMatch) || (got && !strings.Contains(why, "Config gatekeeper-system/config")) {
				t.Errorf("why = %q, want it to name the Config and contain %q", why, tc.wantMatch)
			}
		})
	}

	var none *Exclusions
	if got, _ := none.Excluded(ProcessWebhook, podGVK, "p", "kube-system", nil); got {
		t.Error("nil Exclusions excluded something")
	}
}

func TestExclusionsRefuseBadEntries(t *testing.T) {
	x, errs := ParseExclusions(configObject(t, `  match:
  - excludedNamespaces: ["kube-system"]
    processes: ["webhook", "admission"]
  - processes: ["*"]
  - excludedNamespaces: ["x"]
  - excludedNamespaces: ["y"]
    namespaceSelector:
      matchExpressions: [{key: a, operator: Bogus}]
    processes: ["*"]
  - excludedNamespaces: "not-a-list"
    processes: ["*"]
`))
	var msgs []string
	for _, err := range errs {
		msgs = append(msgs, err.Error())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{
		`spec.match[0].processes[1]: unknown process "admission"`,
		"spec.match[1]: no excludedNamespaces",
		"spec.match[2].processes: empty",
		"spec.match[3].namespaceSelector",
		"spec.match[4]",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("errors lack %q:\n%s", want, all)
		}
	}
	// What could be used still applies.
	if got, _ := x.Excluded(ProcessWebhook, podGVK, "p", "kube-system", nil); !got {
		t.Error("the usable process of entry 0 was dropped")
	}
}

func TestWebhookSkips(t *testing.T) {
	x, _ := ParseExclusions(configObject(t, "  match:\n  - excludedNamespaces: [skipped]\n    processes: [webhook]\n"))
	labelled := map[string]any{"metadata": map[string]any{"name": "quiet", "labels": map[string]any{IgnoreLabel: "yes"}}}
	for _, tc := range []struct {
		name     string
		gvk      schema.GroupVersionKind
		obj, ns  string
		nsObject map[string]any
		skip     bool
		want     string
	}{
		{"exempt namespace", podGVK, "p", "gatekeeper-system", nil, true, "exempt"},
		{"the exempt Namespace itself", namespaceGVK, "gatekeeper-system", "", nil, true, "exempt"},
		{"ignore label", podGVK, "p", "quiet", labelled, true, IgnoreLabel},
		{"ignore label on the Namespace itself", namespaceGVK, "quiet", "", labelled, true, IgnoreLabel},
		{"Config", podGVK, "p", "skipped", nil, true, "spec.match[0]"},
		{"none", podGVK, "p", "default", nil, false, ""},
		{"--exempt-namespace prefix", podGVK, "p", "kube-system", nil, true, "(--exempt-namespace kube-*)"},
		{"--exempt-namespace suffix", podGVK, "p", "net-infra", nil, true, "(--exempt-namespace *-infra)"},
		{"--exempt-namespace name, the Namespace itself", namespaceGVK, "team-x", "", nil, true, "(--exempt-namespace team-x)"},
		{"--exempt-namespace name is exact", podGVK, "p", "team-xy", nil, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			skip, why := x.WebhookSkips(ProcessWebhook, Exempt{"kube-*", "*-infra", "team-x"}, tc.gvk, tc.obj, tc.ns, tc.nsObject)
			if skip != tc.skip || !strings.Contains(why, tc.want) {
				t.Errorf("WebhookSkips = %v, %q; want %v containing %q", skip, why, tc.skip, tc.want)
			}
		})
	}
	// Without a Config, the label and the exempt namespace still count.
	var none *Exclusions
	if skip, _ := none.WebhookSkips(ProcessMutation, nil, podGVK, "p", "quiet", labelled); !skip {
		t.Error("nil Exclusions: the ignore label did not skip")
	}
}

func TestIgnoreLabelRefusal(t *testing.T) {
	ns := func(name string, labels map[string]any) map[string]any {
		return map[string]any{"metadata": map[string]any{"name": name, "labels": labels}}
	}
	if msg := IgnoreLabelRefusal(nil, namespaceGVK, ns("team-a", map[string]any{IgnoreLabel: "true"})); !strings.Contains(msg, "Only exempt namespace can have the "+IgnoreLabel+" label") {
		t.Errorf("labelled team-a: %q", msg)
	}
	if msg := IgnoreLabelRefusal(nil, namespaceGVK, ns("gatekeeper-system", map[string]any{IgnoreLabel: "true"})); msg != "" {
		t.Errorf("labelled gatekeeper-system refused: %q", msg)
	}
	if msg := IgnoreLabelRefusal(nil, namespaceGVK, ns("team-a", map[string]any{"owner": "x"})); msg != "" {
		t.Errorf("team-a without the label refused: %q", msg)
	}
	if msg := IgnoreLabelRefusal(Exempt{"kube-*"}, namespaceGVK, ns("kube-system", map[string]any{IgnoreLabel: "true"})); msg != "" {
		t.Errorf("labelled kube-system refused although exempt by kube-*: %q", msg)
	}
	if msg := IgnoreLabelRefusal(nil, podGVK, ns("p", map[string]any{IgnoreLabel: "true"})); msg != "" {
		t.Errorf("a Pod with the label refused: %q", msg)
	}
}

func TestExclusionsEqual(t *testing.T) {
	a, _ := ParseExclusions(configObject(t, "  match:\n  - excludedNamespaces: [a]\n    processes: [sync]\n  - excludedNamespaces: [b]\n    processes: [audit]\n"))
	b, _ := ParseExclusions(configObject(t, "  match:\n  - excludedNamespaces: [a]\n    processes: [sync]\n  - excludedNamespaces: [c]\n    processes: [audit]\n"))
	if !a.Equal(b, ProcessSync) {
		t.Error("sync exclusions differ although only audit's changed")
	}
	if a.Equal(b, ProcessAudit) {
		t.Error("audit exclusions equal although they changed")
	}
	var none *Exclusions
	if none.Equal(a, ProcessSync) || !none.Equal(nil, ProcessSync) {
		t.Error("nil compares wrongly")
	}
}
