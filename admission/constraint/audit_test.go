package constraint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func obj(apiVersion, kind, namespace, name string, labels map[string]any) *unstructured.Unstructured {
	meta := map[string]any{"name": name}
	if namespace != "" {
		meta["namespace"] = namespace
	}
	if labels != nil {
		meta["labels"] = labels
	}
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": meta}}
}

func nsObj(name string, labels map[string]any) map[string]any {
	return obj("v1", "Namespace", "", name, labels).Object
}

func TestAuditReview(t *testing.T) {
	dev := nsObj("dev", map[string]any{"env": "dev"})
	deploy := obj("apps/v1", "Deployment", "dev", "web", nil)
	deploy.Object["spec"] = map[string]any{"replicas": int64(3)}
	tests := []struct {
		name string
		obj  *unstructured.Unstructured
		ns   map[string]any
		want map[string]any
	}{
		{
			name: "namespaced object: namespace and namespaceObject, no operation or user",
			obj:  deploy,
			ns:   dev,
			want: map[string]any{
				"uid":       "",
				"kind":      map[string]any{"group": "apps", "version": "v1", "kind": "Deployment"},
				"resource":  map[string]any{"group": "", "version": "", "resource": ""},
				"name":      "web",
				"namespace": "dev",
				"operation": "",
				"userInfo":  map[string]any{},
				// Through JSON, as upstream's driver sends it: numbers are float64.
				"object": map[string]any{"apiVersion": "apps/v1", "kind": "Deployment",
					"metadata": map[string]any{"name": "web", "namespace": "dev"}, "spec": map[string]any{"replicas": float64(3)}},
				"oldObject":       nil,
				"options":         nil,
				"namespaceObject": dev,
			},
		},
		{
			name: "cluster-scoped object: no namespace, no namespaceObject",
			obj:  obj("rbac.authorization.k8s.io/v1", "ClusterRole", "", "admin", nil),
			ns:   dev, // ignored
			want: map[string]any{
				"uid":       "",
				"kind":      map[string]any{"group": "rbac.authorization.k8s.io", "version": "v1", "kind": "ClusterRole"},
				"resource":  map[string]any{"group": "", "version": "", "resource": ""},
				"name":      "admin",
				"operation": "",
				"userInfo":  map[string]any{},
				"object": map[string]any{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
					"metadata": map[string]any{"name": "admin"}},
				"oldObject": nil,
				"options":   nil,
			},
		},
		{
			name: "a Namespace is cluster-scoped: no namespaceObject",
			obj:  &unstructured.Unstructured{Object: dev},
			want: map[string]any{
				"uid":       "",
				"kind":      map[string]any{"group": "", "version": "v1", "kind": "Namespace"},
				"resource":  map[string]any{"group": "", "version": "", "resource": ""},
				"name":      "dev",
				"operation": "",
				"userInfo":  map[string]any{},
				"object":    dev,
				"oldObject": nil,
				"options":   nil,
			},
		},
		{
			name: "namespaced object whose Namespace is unknown",
			obj:  obj("v1", "ConfigMap", "gone", "c", nil),
			want: map[string]any{
				"uid":       "",
				"kind":      map[string]any{"group": "", "version": "v1", "kind": "ConfigMap"},
				"resource":  map[string]any{"group": "", "version": "", "resource": ""},
				"name":      "c",
				"namespace": "gone",
				"operation": "",
				"userInfo":  map[string]any{},
				"object":    obj("v1", "ConfigMap", "gone", "c", nil).Object,
				"oldObject": nil,
				"options":   nil,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AuditReview(tt.obj, tt.ns)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("AuditReview mismatch (-want +got):\n%s", diff)
			}
		})
	}

	if _, err := AuditReview(&unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "x"}}}, nil); err == nil {
		t.Error("AuditReview of an object without apiVersion and kind succeeded")
	}
}

func TestAuditTarget(t *testing.T) {
	dev := nsObj("dev", nil)
	tests := []struct {
		name   string
		obj    *unstructured.Unstructured
		ns     map[string]any
		wantNS map[string]any
	}{
		{"namespaced object gets its Namespace", obj("v1", "Pod", "dev", "p", nil), dev, dev},
		{"a Namespace is its own", &unstructured.Unstructured{Object: dev}, nil, dev},
		{"cluster-scoped object has none", obj("v1", "Node", "", "n", nil), dev, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AuditTarget(tt.obj, tt.ns)
			if got.GVK != tt.obj.GroupVersionKind() || got.Name != tt.obj.GetName() || got.Namespace != tt.obj.GetNamespace() {
				t.Errorf("target = %v %s/%s", got.GVK, got.Namespace, got.Name)
			}
			if got.OldObject != nil || got.Object == nil {
				t.Errorf("target objects: object %v, oldObject %v", got.Object != nil, got.OldObject != nil)
			}
			if diff := cmp.Diff(tt.wantNS, got.NamespaceObject); diff != "" {
				t.Errorf("NamespaceObject (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAuditActions(t *testing.T) {
	scoped := func(entries ...any) map[string]any {
		return map[string]any{"spec": map[string]any{"enforcementAction": "scoped", "scopedEnforcementActions": entries}}
	}
	entry := func(action string, points ...string) any {
		var ps []any
		for _, p := range points {
			ps = append(ps, map[string]any{"name": p})
		}
		return map[string]any{"action": action, "enforcementPoints": ps}
	}
	tests := []struct {
		name           string
		action         string
		obj            map[string]any
		want           []string
		wantRecorded   string
		wantNotAudited bool
	}{
		{name: "unset is deny", action: "", want: []string{"deny"}, wantRecorded: "deny"},
		{name: "deny", action: "deny", want: []string{"deny"}, wantRecorded: "deny"},
		{name: "warn", action: "warn", want: []string{"warn"}, wantRecorded: "warn"},
		{name: "dryrun", action: "dryrun", want: []string{"dryrun"}, wantRecorded: "dryrun"},
		{name: "scoped to audit", action: "scoped", obj: scoped(entry("warn", AuditEnforcementPoint), entry("deny", EnforcementPoint)), want: []string{"warn"}, wantRecorded: "scoped"},
		{name: "scoped to every point", action: "scoped", obj: scoped(entry("deny", "*"), entry("deny", AuditEnforcementPoint)), want: []string{"deny"}, wantRecorded: "scoped"},
		{name: "scoped to the webhook only is not audited", action: "scoped", obj: scoped(entry("deny", EnforcementPoint)), wantRecorded: "scoped", wantNotAudited: true},
		{name: "scoped without its object", action: "scoped", wantRecorded: "scoped", wantNotAudited: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := tt.obj
			if obj == nil {
				obj = map[string]any{"spec": map[string]any{"enforcementAction": tt.action}}
			}
			obj["apiVersion"], obj["kind"], obj["metadata"] = "constraints.gatekeeper.sh/v1beta1", "K", map[string]any{"name": "c"}
			c, err := ParseConstraint(&unstructured.Unstructured{Object: obj})
			if err != nil {
				t.Fatal(err)
			}
			got := auditActions(c)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("auditActions (-want +got):\n%s", diff)
			}
			if tt.wantNotAudited != (len(got) == 0) {
				t.Errorf("audited = %v, want %v", len(got) > 0, !tt.wantNotAudited)
			}
			if r := recordedAction(c); r != tt.wantRecorded {
				t.Errorf("recordedAction = %q, want %q", r, tt.wantRecorded)
			}
		})
	}
}

// violationsFor makes one violation per message for c.
func violationsFor(c *Constraint, msgs ...string) []Violation {
	var out []Violation
	for _, m := range msgs {
		out = append(out, Violation{Constraint: c, Msg: m})
	}
	return out
}

func TestAuditCollector(t *testing.T) {
	deny := &Constraint{Kind: "K8sRequiredLabels", Name: "deny"}
	warn := &Constraint{Kind: "K8sRequiredLabels", Name: "warn", EnforcementAction: "warn"}
	notAudited := &Constraint{Kind: "K8sRequiredLabels", Name: "webhook-only", EnforcementAction: "scoped"}
	constraints := []*Constraint{deny, warn, notAudited}
	actions := map[constraintKey][]string{keyOf(deny): {"deny"}, keyOf(warn): {"warn"}}
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)

	pods := []*unstructured.Unstructured{obj("v1", "Pod", "a", "p1", nil), obj("v1", "Pod", "b", "p2", nil), obj("v1", "Pod", "c", "p3", nil)}
	node := obj("v1", "Node", "", "n1", nil)

	tests := []struct {
		name      string
		limit     int
		wantTotal map[string]int
		wantKept  map[string][]string // constraint -> "namespace/name kind: msg"
	}{
		{
			name: "all kept under the limit", limit: 20,
			wantTotal: map[string]int{"deny": 4, "warn": 1, "webhook-only": 0},
			wantKept: map[string][]string{
				"deny": {"a/p1 Pod: m1", "b/p2 Pod: m2", "c/p3 Pod: m3", "n1 Node: m4"},
				"warn": {"a/p1 Pod: w"},
			},
		},
		{
			name: "capped at the limit, total counts all", limit: 2,
			wantTotal: map[string]int{"deny": 4, "warn": 1, "webhook-only": 0},
			wantKept: map[string][]string{
				"deny": {"a/p1 Pod: m1", "b/p2 Pod: m2"},
				"warn": {"a/p1 Pod: w"},
			},
		},
		{
			name: "limit 0 keeps none", limit: 0,
			wantTotal: map[string]int{"deny": 4, "warn": 1, "webhook-only": 0},
			wantKept:  map[string][]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			col := newAuditCollector(constraints, actions, tt.limit, at)
			col.add(pods[0], append(violationsFor(deny, "m1"), append(violationsFor(warn, "w"), violationsFor(notAudited, "x")...)...))
			col.add(pods[1], violationsFor(deny, "m2"))
			// The syncer replaces a constraint's *Constraint on updates:
			// results are keyed by kind and name.
			col.add(pods[2], violationsFor(&Constraint{Kind: deny.Kind, Name: deny.Name}, "m3"))
			col.add(node, violationsFor(deny, "m4"))
			// A constraint that appeared during the pass is left out.
			col.add(node, violationsFor(&Constraint{Kind: "K8sRequiredLabels", Name: "new"}, "m5"))

			got := col.results()
			var names []string
			for _, r := range got {
				names = append(names, r.Constraint.Name)
				if r.Total != tt.wantTotal[r.Constraint.Name] {
					t.Errorf("%s: total = %d, want %d", r.Constraint.Name, r.Total, tt.wantTotal[r.Constraint.Name])
				}
				var kept []string
				for _, v := range r.Violations {
					kept = append(kept, fmt.Sprintf("%s %s: %s", objectName(v.Namespace, v.Name), v.Kind, v.Message))
					if v.EnforcementAction != r.EnforcementAction || v.Version != "v1" || v.Group != "" {
						t.Errorf("%s: entry %+v", r.Constraint.Name, v)
					}
				}
				if diff := cmp.Diff(tt.wantKept[r.Constraint.Name], kept); diff != "" {
					t.Errorf("%s: kept violations (-want +got):\n%s", r.Constraint.Name, diff)
				}
				if r.Violations == nil {
					t.Errorf("%s: Violations is nil, want an empty list", r.Constraint.Name)
				}
				if !r.Timestamp.Equal(at) {
					t.Errorf("%s: timestamp %v", r.Constraint.Name, r.Timestamp)
				}
			}
			if diff := cmp.Diff([]string{"deny", "warn", "webhook-only"}, names); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
			if !got[0].Denies() || got[1].Denies() || got[2].Denies() {
				t.Errorf("Denies = %v %v %v, want true false false", got[0].Denies(), got[1].Denies(), got[2].Denies())
			}
		})
	}
}

func TestTruncateMessage(t *testing.T) {
	tests := []struct {
		name string
		msg  string
		want string
	}{
		{"short", "missing label owner", "missing label owner"},
		{"exactly the size", strings.Repeat("a", 256), strings.Repeat("a", 256)},
		{"one over", strings.Repeat("a", 257), strings.Repeat("a", 253) + "..."},
		{"cut inside a rune moves back", strings.Repeat("a", 252) + "é" + strings.Repeat("b", 10), strings.Repeat("a", 252) + "..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := truncateMessage(tt.msg, auditMessageSize)
			if got != tt.want {
				t.Errorf("truncateMessage = %q (%d bytes), want %q (%d bytes)", got, len(got), tt.want, len(tt.want))
			}
			if len(got) > auditMessageSize {
				t.Errorf("result is %d bytes, more than %d", len(got), auditMessageSize)
			}
		})
	}
}

func TestStatusPatch(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 30, 0, 0, time.FixedZone("CEST", 2*3600))
	c := &Constraint{Kind: "K8sRequiredLabels", Name: "owner"}
	tests := []struct {
		name   string
		result AuditResult
		want   map[string]any
	}{
		{
			name: "violations, namespace only for namespaced objects",
			result: AuditResult{Constraint: c, Total: 5, Timestamp: at, Violations: []AuditViolation{
				{EnforcementAction: "deny", Version: "v1", Kind: "Pod", Namespace: "dev", Name: "p", Message: "m1"},
				{EnforcementAction: "deny", Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole", Name: "r", Message: "m2"},
			}},
			want: map[string]any{"status": map[string]any{
				"auditTimestamp":  "2026-05-01T10:30:00Z",
				"totalViolations": int64(5),
				"violations": []any{
					map[string]any{"enforcementAction": "deny", "group": "", "version": "v1", "kind": "Pod", "namespace": "dev", "name": "p", "message": "m1"},
					map[string]any{"enforcementAction": "deny", "group": "rbac.authorization.k8s.io", "version": "v1", "kind": "ClusterRole", "name": "r", "message": "m2"},
				},
			}},
		},
		{
			name:   "no violations: total 0, violations removed",
			result: AuditResult{Constraint: c, Timestamp: at, Violations: []AuditViolation{}},
			want: map[string]any{"status": map[string]any{
				"auditTimestamp":  "2026-05-01T10:30:00Z",
				"totalViolations": int64(0),
				"violations":      nil,
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, statusPatch(&tt.result)); diff != "" {
				t.Errorf("statusPatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAuditKinds(t *testing.T) {
	c := func(kinds ...KindSelector) *Constraint {
		return &Constraint{Kind: "K", Name: "c", Match: Match{Kinds: kinds}}
	}
	tests := []struct {
		name      string
		cs        []*Constraint
		wantKinds []string
		wantAll   bool
	}{
		{"none", nil, nil, false},
		{"named kinds, any group", []*Constraint{c(KindSelector{APIGroups: []string{""}, Kinds: []string{"Pod", "Service"}}), c(KindSelector{APIGroups: []string{"apps"}, Kinds: []string{"Deployment"}})}, []string{"Deployment", "Pod", "Service"}, false},
		{"a constraint without kinds selects all", []*Constraint{c(KindSelector{Kinds: []string{"Pod"}}), c()}, nil, true},
		{"kind *", []*Constraint{c(KindSelector{APIGroups: []string{"apps"}, Kinds: []string{"*"}})}, nil, true},
		{"empty kind", []*Constraint{c(KindSelector{Kinds: []string{""}})}, nil, true},
		{"entry without kinds", []*Constraint{c(KindSelector{APIGroups: []string{"apps"}})}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kinds, all := auditKinds(tt.cs)
			if all != tt.wantAll {
				t.Errorf("all = %v, want %v", all, tt.wantAll)
			}
			if tt.wantAll {
				return
			}
			var got []string
			for k := range kinds {
				got = append(got, k)
			}
			if diff := cmp.Diff(tt.wantKinds, sorted(got)); diff != "" {
				t.Errorf("kinds (-want +got):\n%s", diff)
			}
		})
	}
}

func sorted(s []string) []string {
	if s == nil {
		return nil
	}
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

var testResources = []*metav1.APIResourceList{
	{GroupVersion: "v1", APIResources: []metav1.APIResource{
		{Name: "pods", Namespaced: true, Kind: "Pod", Verbs: []string{"create", "get", "list", "watch"}},
		{Name: "pods/status", Namespaced: true, Kind: "Pod", Verbs: []string{"get", "list", "patch"}},
		{Name: "bindings", Namespaced: true, Kind: "Binding", Verbs: []string{"create"}},
		{Name: "events", Namespaced: true, Kind: "Event", Verbs: []string{"list"}},
		{Name: "namespaces", Kind: "Namespace", Verbs: []string{"list"}},
	}},
	{GroupVersion: "apps/v1", APIResources: []metav1.APIResource{
		{Name: "deployments", Namespaced: true, Kind: "Deployment", Verbs: []string{"list"}},
		{Name: "deployments/scale", Namespaced: true, Kind: "Scale", Verbs: []string{"get", "list"}},
	}},
	{GroupVersion: "events.k8s.io/v1", APIResources: []metav1.APIResource{
		{Name: "events", Namespaced: true, Kind: "Event", Verbs: []string{"list"}},
	}},
	{GroupVersion: "example.com/v1", APIResources: []metav1.APIResource{
		{Name: "pods", Namespaced: true, Kind: "Pod", Verbs: []string{"list"}},
	}},
}

func TestSelectResources(t *testing.T) {
	tests := []struct {
		name  string
		kinds []string
		all   bool
		want  []string // group/version/resource
	}{
		{"one kind, every group that has it", []string{"Pod"}, false, []string{"/v1/pods", "example.com/v1/pods"}},
		{"all: listable kinds, no subresources, no events", nil, true, []string{"/v1/namespaces", "/v1/pods", "apps/v1/deployments", "example.com/v1/pods"}},
		{"events when named", []string{"Event"}, false, []string{"/v1/events", "events.k8s.io/v1/events"}},
		{"unlistable kind", []string{"Binding"}, false, nil},
		{"subresource kind is not listed", []string{"Scale"}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kinds := map[string]bool{}
			for _, k := range tt.kinds {
				kinds[k] = true
			}
			var got []string
			for _, r := range selectResources(testResources, kinds, tt.all) {
				got = append(got, r.gvr.Group+"/"+r.gvr.Version+"/"+r.gvr.Resource)
				if r.gvk.GroupVersion() != r.gvr.GroupVersion() {
					t.Errorf("%v has kind %v", r.gvr, r.gvk)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("resources (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEngineConstraints(t *testing.T) {
	e := NewEngine(0)
	mustAddTemplate(t, e, TemplateSource{Name: "b", Kind: "B", Rego: requiredLabelsV1})
	mustAddTemplate(t, e, TemplateSource{Name: "a", Kind: "A", Rego: requiredLabelsV1})
	for _, c := range []*Constraint{{Kind: "B", Name: "y"}, {Kind: "A", Name: "z"}, {Kind: "B", Name: "x"}} {
		mustAddConstraint(t, e, c)
	}
	var got []string
	for _, c := range e.Constraints() {
		got = append(got, c.Kind+"/"+c.Name)
	}
	if diff := cmp.Diff([]string{"A/z", "B/x", "B/y"}, got); diff != "" {
		t.Errorf("Constraints (-want +got):\n%s", diff)
	}
}

// namespaceOwnerRego reads input.review.namespaceObject, which audit
// reviews carry for namespaced objects.
const namespaceOwnerRego = `package nsowner

violation[{"msg": msg}] {
	not input.review.namespaceObject.metadata.labels.owner
	msg := sprintf("namespace %v has no owner", [input.review.namespace])
}
`

// existingObjectRego reports what an audit review of an existing object
// has instead of an admission request's operation and user.
const existingObjectRego = `package existing

violation[{"msg": msg}] {
	input.review.operation == ""
	not input.review.userInfo.username
	input.review.oldObject == null
	msg := sprintf("existing %v %v", [input.review.kind.kind, input.review.name])
}
`

// auditTestEngine has constraints of every enforcement action.
func auditTestEngine(t *testing.T) *Engine {
	t.Helper()
	e := NewEngine(0)
	mustAddTemplate(t, e, TemplateSource{Name: "k8srequiredlabels", Kind: "K8sRequiredLabels", Rego: requiredLabelsV1})
	mustAddTemplate(t, e, TemplateSource{Name: "nsowner", Kind: "NsOwner", Rego: namespaceOwnerRego})
	mustAddTemplate(t, e, TemplateSource{Name: "existing", Kind: "Existing", Rego: existingObjectRego})
	pods := []KindSelector{{APIGroups: []string{""}, Kinds: []string{"Pod"}}}
	for _, c := range []*Constraint{
		{Kind: "K8sRequiredLabels", Name: "pods-owner", Match: Match{Kinds: pods}, Parameters: map[string]any{"labels": []any{"owner"}}},
		{Kind: "K8sRequiredLabels", Name: "pods-team-warn", EnforcementAction: "warn", Match: Match{Kinds: pods, ExcludedNamespaces: []string{"kube-*"}}, Parameters: map[string]any{"labels": []any{"team"}}},
		{Kind: "K8sRequiredLabels", Name: "prod-dryrun", EnforcementAction: "dryrun",
			Match:      Match{Kinds: pods, NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}},
			Parameters: map[string]any{"labels": []any{"oncall"}}},
		{Kind: "NsOwner", Name: "ns-owner", Match: Match{Kinds: pods}},
		{Kind: "Existing", Name: "roles", EnforcementAction: "warn", Match: Match{Kinds: []KindSelector{{APIGroups: []string{"rbac.authorization.k8s.io"}, Kinds: []string{"ClusterRole"}}}}},
	} {
		mustAddConstraint(t, e, c)
	}
	return e
}

func TestAuditReviewsObjectsWithTheEngine(t *testing.T) {
	e := auditTestEngine(t)
	namespaces := map[string]map[string]any{
		"dev":         nsObj("dev", map[string]any{"owner": "a"}),
		"prod":        nsObj("prod", map[string]any{"env": "prod"}),
		"kube-system": nsObj("kube-system", map[string]any{"owner": "k"}),
	}
	a := &Auditor{engine: e, namespaces: func(name string) map[string]any { return namespaces[name] }, logger: discardLogger(), Limit: 2}
	objects := []*unstructured.Unstructured{
		obj("v1", "Pod", "dev", "good", map[string]any{"owner": "x", "team": "y"}),
		obj("v1", "Pod", "dev", "no-team", map[string]any{"owner": "x"}),
		obj("v1", "Pod", "prod", "bare", nil),
		obj("v1", "Pod", "kube-system", "system", map[string]any{"owner": "x"}),
		obj("v1", "Pod", "unknown", "skipped", nil), // its Namespace cannot be found
		obj("v1", "Pod", "dev", "bare-dev", nil),
		obj("rbac.authorization.k8s.io/v1", "ClusterRole", "", "admin", nil),
		obj("v1", "ConfigMap", "dev", "not-matched", nil),
	}
	constraints := e.Constraints()
	actions := map[constraintKey][]string{}
	for _, c := range constraints {
		actions[keyOf(c)] = auditActions(c)
	}
	col := newAuditCollector(constraints, actions, a.Limit, time.Now())
	cache := map[string]map[string]any{}
	for _, o := range objects {
		if err := a.reviewObject(context.Background(), o, cache, col); err != nil {
			t.Fatalf("reviewObject %s: %v", o.GetName(), err)
		}
	}

	type want struct {
		action string
		total  int
		kept   []string
	}
	wants := map[string]want{
		"Existing/roles":                   {"warn", 1, []string{"ClusterRole admin: existing ClusterRole admin"}},
		"K8sRequiredLabels/pods-owner":     {"deny", 2, []string{"Pod prod/bare: missing label owner", "Pod dev/bare-dev: missing label owner"}},
		"K8sRequiredLabels/pods-team-warn": {"warn", 3, []string{"Pod dev/no-team: missing label team", "Pod prod/bare: missing label team"}},
		"K8sRequiredLabels/prod-dryrun":    {"dryrun", 1, []string{"Pod prod/bare: missing label oncall"}},
		"NsOwner/ns-owner":                 {"deny", 1, []string{"Pod prod/bare: namespace prod has no owner"}},
	}
	results := col.results()
	if len(results) != len(wants) {
		t.Fatalf("%d results, want %d", len(results), len(wants))
	}
	for _, r := range results {
		key := r.Constraint.Kind + "/" + r.Constraint.Name
		w, ok := wants[key]
		if !ok {
			t.Errorf("unexpected result for %s", key)
			continue
		}
		var kept []string
		for _, v := range r.Violations {
			kept = append(kept, fmt.Sprintf("%s %s: %s", v.Kind, objectName(v.Namespace, v.Name), v.Message))
			if v.EnforcementAction != w.action {
				t.Errorf("%s: entry action %q, want %q", key, v.EnforcementAction, w.action)
			}
		}
		if r.EnforcementAction != w.action || r.Total != w.total {
			t.Errorf("%s: action %q total %d, want %q %d", key, r.EnforcementAction, r.Total, w.action, w.total)
		}
		if diff := cmp.Diff(w.kept, kept); diff != "" {
			t.Errorf("%s: violations (-want +got):\n%s", key, diff)
		}
	}
	if _, ok := cache["unknown"]; !ok || cache["unknown"] != nil {
		t.Errorf("the unknown namespace was not looked up once: cache %v", cache)
	}
}

// stubDiscovery serves fixed preferred resources.
type stubDiscovery struct {
	lists []*metav1.APIResourceList
	err   error
}

func (s stubDiscovery) ServerPreferredResources() ([]*metav1.APIResourceList, error) {
	return s.lists, s.err
}

// TestAuditPassWithFakeClients runs Audit and WriteStatus against fake
// discovery and dynamic clients: listing, namespace lookup from the API,
// scoped constraints audited by their audit actions, and the status written.
func TestAuditPassWithFakeClients(t *testing.T) {
	ctx := context.Background()
	e := NewEngine(0)
	mustAddTemplate(t, e, TemplateSource{Name: "k8srequiredlabels", Kind: "K8sRequiredLabels", Rego: requiredLabelsV1})
	pods := []KindSelector{{Kinds: []string{"Pod"}}}
	params := map[string]any{"labels": []any{"owner"}}
	mustAddConstraint(t, e, &Constraint{Kind: "K8sRequiredLabels", Name: "deny-pods", Match: Match{Kinds: pods}, Parameters: params})
	// Scoped constraints carry their scopedEnforcementActions as the
	// syncer loads them: through ParseConstraint.
	scopedConstraint := func(name, point string) *Constraint {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": ConstraintsGroup + "/" + ConstraintsVersion, "kind": "K8sRequiredLabels", "metadata": map[string]any{"name": name},
			"spec": map[string]any{"enforcementAction": "scoped", "scopedEnforcementActions": []any{
				map[string]any{"action": "warn", "enforcementPoints": []any{map[string]any{"name": point}}}}},
		}}
		c, err := ParseConstraint(u)
		if err != nil {
			t.Fatal(err)
		}
		c.Match, c.Parameters = Match{Kinds: pods}, params
		return c
	}
	mustAddConstraint(t, e, scopedConstraint("audit-warn", AuditEnforcementPoint))
	mustAddConstraint(t, e, scopedConstraint("webhook-only", EnforcementPoint))
	mustAddConstraint(t, e, &Constraint{Kind: "K8sRequiredLabels", Name: "clean", Match: Match{Kinds: []KindSelector{{Kinds: []string{"Node"}}}}, Parameters: params})

	gvrs := map[schema.GroupVersionResource]string{
		{Version: "v1", Resource: "pods"}:       "PodList",
		{Version: "v1", Resource: "namespaces"}: "NamespaceList",
		{Version: "v1", Resource: "nodes"}:      "NodeList",
		ConstraintGVR("K8sRequiredLabels"):      "K8sRequiredLabelsList",
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), gvrs,
		&unstructured.Unstructured{Object: nsObj("dev", nil)},
		obj("v1", "Pod", "dev", "a", nil),
		obj("v1", "Pod", "dev", "b", map[string]any{"owner": "x"}),
		obj("v1", "Pod", "dev", "c", nil),
		obj("v1", "Node", "", "n", map[string]any{"owner": "x"}),
	)
	constraintObj := func(name string, spec map[string]any, status map[string]any) {
		u := obj(ConstraintsGroup+"/"+ConstraintsVersion, "K8sRequiredLabels", "", name, nil)
		u.Object["spec"] = spec
		if status != nil {
			u.Object["status"] = status
		}
		if err := dyn.Tracker().Create(ConstraintGVR("K8sRequiredLabels"), u, ""); err != nil {
			t.Fatal(err)
		}
	}
	scoped := func(point string) map[string]any {
		return map[string]any{"enforcementAction": "scoped", "scopedEnforcementActions": []any{
			map[string]any{"action": "warn", "enforcementPoints": []any{map[string]any{"name": point}}}}}
	}
	// A previous pass's violations and another writer's status fields.
	constraintObj("deny-pods", map[string]any{}, map[string]any{"byPod": []any{"kept"}, "violations": []any{"old"}})
	constraintObj("audit-warn", scoped(AuditEnforcementPoint), nil)
	constraintObj("webhook-only", scoped(EnforcementPoint), nil)
	constraintObj("clean", map[string]any{}, map[string]any{"violations": []any{"old"}})

	lists := []*metav1.APIResourceList{{GroupVersion: "v1", APIResources: []metav1.APIResource{
		{Name: "pods", Namespaced: true, Kind: "Pod", Verbs: []string{"list"}},
		{Name: "nodes", Kind: "Node", Verbs: []string{"list"}},
		{Name: "namespaces", Kind: "Namespace", Verbs: []string{"list"}},
	}}}
	a := &Auditor{engine: e, dyn: dyn, discovery: stubDiscovery{lists: lists}, logger: discardLogger(), Limit: 1}
	results, err := a.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type summary struct {
		Name, Action string
		Actions      []string
		Total, Kept  int
	}
	var got []summary
	for _, r := range results {
		got = append(got, summary{r.Constraint.Name, r.EnforcementAction, r.Actions, r.Total, len(r.Violations)})
	}
	want := []summary{
		{"audit-warn", "scoped", []string{"warn"}, 2, 1},
		{"clean", "deny", []string{"deny"}, 0, 0},
		{"deny-pods", "deny", []string{"deny"}, 2, 1},
		{"webhook-only", "scoped", nil, 0, 0},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("results (-want +got):\n%s", diff)
	}

	if err := a.WriteStatus(ctx, results); err != nil {
		t.Fatal(err)
	}
	status := func(name string) map[string]any {
		u, err := dyn.Resource(ConstraintGVR("K8sRequiredLabels")).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s, _, _ := unstructured.NestedMap(u.Object, "status")
		return s
	}
	ts := results[0].Timestamp.UTC().Format(time.RFC3339)
	if diff := cmp.Diff(map[string]any{
		"auditTimestamp":  ts,
		"totalViolations": int64(2),
		"byPod":           []any{"kept"},
		"violations": []any{map[string]any{
			"enforcementAction": "deny", "group": "", "version": "v1", "kind": "Pod", "namespace": "dev", "name": "a", "message": "missing label owner",
		}},
	}, status("deny-pods")); diff != "" {
		t.Errorf("deny-pods status (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]any{"auditTimestamp": ts, "totalViolations": int64(0)}, status("clean")); diff != "" {
		t.Errorf("clean status (-want +got):\n%s", diff)
	}
	if s := status("webhook-only"); s["totalViolations"] != int64(0) {
		t.Errorf("webhook-only status = %v, want totalViolations 0", s)
	}

	// A constraint deleted since the pass is skipped; other failures are errors.
	if err := dyn.Tracker().Delete(ConstraintGVR("K8sRequiredLabels"), "", "clean"); err != nil {
		t.Fatal(err)
	}
	if err := a.WriteStatus(ctx, results); err != nil {
		t.Errorf("WriteStatus after a deletion: %v", err)
	}

	// Discovery failing entirely fails the pass.
	a.discovery = stubDiscovery{err: errors.New("boom")}
	if _, err := a.Audit(ctx); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("Audit with failing discovery = %v, want the error", err)
	}
}
