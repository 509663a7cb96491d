package constraint

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

const requiredLabelsV0 = `package k8srequiredlabels

violation[{"msg": msg, "details": {"missing_labels": missing}}] {
	provided := {label | input.review.object.metadata.labels[label]}
	required := {label | label := input.parameters.labels[_]}
	missing := required - provided
	count(missing) > 0
	msg := sprintf("you must provide labels: %v", [missing])
}
`

const requiredLabelsV1 = `package k8srequiredlabelsv1

import rego.v1

violation contains {"msg": msg} if {
	some label in input.parameters.labels
	not input.review.object.metadata.labels[label]
	msg := sprintf("missing label %s", [label])
}
`

func namespaceReview(labels map[string]any) (map[string]any, *Target) {
	obj := map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "dev", "labels": labels}}
	review := map[string]any{
		"kind":      map[string]any{"group": "", "version": "v1", "kind": "Namespace"},
		"name":      "dev",
		"operation": "CREATE",
		"object":    obj,
	}
	return review, &Target{GVK: schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}, Name: "dev", Object: obj, NamespaceObject: obj}
}

func mustAddTemplate(t *testing.T, e *Engine, src TemplateSource) {
	t.Helper()
	if err := e.AddTemplate(context.Background(), src); err != nil {
		t.Fatalf("AddTemplate %s: %v", src.Name, err)
	}
}

func mustAddConstraint(t *testing.T, e *Engine, c *Constraint) {
	t.Helper()
	if err := e.AddConstraint(context.Background(), c); err != nil {
		t.Fatalf("AddConstraint %s: %v", c.Name, err)
	}
}

func TestReviewRequiredLabels(t *testing.T) {
	ctx := context.Background()
	e := NewEngine(0)
	mustAddTemplate(t, e, TemplateSource{Name: "k8srequiredlabels", Kind: "K8sRequiredLabels", Rego: requiredLabelsV0})
	mustAddTemplate(t, e, TemplateSource{Name: "k8srequiredlabelsv1", Kind: "K8sRequiredLabelsV1", Rego: requiredLabelsV1})
	mustAddConstraint(t, e, &Constraint{Kind: "K8sRequiredLabels", Name: "ns-owner", Parameters: map[string]any{"labels": []any{"owner"}}})
	mustAddConstraint(t, e, &Constraint{Kind: "K8sRequiredLabelsV1", Name: "ns-team", Parameters: map[string]any{"labels": []any{"team"}}})

	tests := []struct {
		name   string
		labels map[string]any
		want   []string // "constraint: msg"
	}{
		{"both missing", nil, []string{`ns-owner: you must provide labels: {"owner"}`, "ns-team: missing label team"}},
		{"owner present", map[string]any{"owner": "me"}, []string{"ns-team: missing label team"}},
		{"all present", map[string]any{"owner": "me", "team": "a"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			review, target := namespaceReview(tt.labels)
			got, err := e.Review(ctx, review, target)
			if err != nil {
				t.Fatal(err)
			}
			var msgs []string
			for _, v := range got {
				msgs = append(msgs, v.Constraint.Name+": "+v.Msg)
			}
			if strings.Join(msgs, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("violations:\n%s\nwant:\n%s", strings.Join(msgs, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}

	// details default to {} and carry what the template put there.
	review, target := namespaceReview(nil)
	got, _ := e.Review(ctx, review, target)
	if d, ok := got[0].Details.(map[string]any); !ok || d["missing_labels"] == nil {
		t.Errorf("details of %s = %#v, want missing_labels", got[0].Constraint.Name, got[0].Details)
	}
	if d, ok := got[1].Details.(map[string]any); !ok || len(d) != 0 {
		t.Errorf("details of %s = %#v, want {}", got[1].Constraint.Name, got[1].Details)
	}

	// Removing a constraint stops its violations; the other remains.
	if err := e.RemoveConstraint(ctx, "K8sRequiredLabels", "ns-owner"); err != nil {
		t.Fatal(err)
	}
	got, _ = e.Review(ctx, review, target)
	if len(got) != 1 || got[0].Constraint.Name != "ns-team" {
		t.Errorf("after removing ns-owner: %v", got)
	}
}

func TestLibs(t *testing.T) {
	e := NewEngine(0)
	mustAddTemplate(t, e, TemplateSource{
		Name: "withlib", Kind: "WithLib",
		Rego: `package withlib
import data.lib.helpers
violation[{"msg": msg}] { helpers.is_dev(input.review.object); msg := "no dev" }`,
		Libs: []string{`package lib.helpers
is_dev(obj) { obj.metadata.name == "dev" }`},
	})
	mustAddConstraint(t, e, &Constraint{Kind: "WithLib", Name: "c"})
	review, target := namespaceReview(nil)
	got, err := e.Review(context.Background(), review, target)
	if err != nil || len(got) != 1 || got[0].Msg != "no dev" {
		t.Fatalf("Review = %v, %v; want one violation 'no dev'", got, err)
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		src  TemplateSource
		want []string
	}{
		{"syntax error has the line", TemplateSource{Name: "bad", Kind: "Bad", Rego: "package bad\n\nviolation[{\"msg\": m}] {\n  m := \n}\n"}, []string{"template bad", "bad.rego:5", "rego_parse_error"}},
		{"no violation rule", TemplateSource{Name: "noviol", Kind: "NoViol", Rego: "package noviol\nallow { true }"}, []string{"missing required rule violation"}},
		{"data outside lib and inventory", TemplateSource{Name: "peek", Kind: "Peek", Rego: "package peek\nviolation[{\"msg\": m}] { data.secrets.x; m := \"x\" }"}, []string{"disallowed ref data.secrets.x"}},
		{"lib outside data.lib", TemplateSource{Name: "badlib", Kind: "BadLib", Rego: "package badlib\nviolation[{\"msg\": \"x\"}] { false }", Libs: []string{"package helpers\nf { true }"}}, []string{"not under data.lib"}},
		{"http.send is disabled", TemplateSource{Name: "net", Kind: "Net", Rego: "package net\nviolation[{\"msg\": m}] { r := http.send({\"method\": \"get\", \"url\": \"http://x\"}); m := \"x\" }"}, []string{"http.send"}},
		{"no rego", TemplateSource{Name: "empty", Kind: "Empty"}, []string{"no Rego source"}},
		{"unsafe var", TemplateSource{Name: "unsafe", Kind: "Unsafe", Rego: "package unsafe\nviolation[{\"msg\": m}] { x == 1; m := \"x\" }"}, []string{"unsafe.rego:2", "var x is unsafe"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEngine(0)
			err := e.AddTemplate(context.Background(), tt.src)
			var ce *CompileError
			if !errors.As(err, &ce) {
				t.Fatalf("AddTemplate = %v, want a CompileError", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if e.HasTemplate(tt.src.Kind) {
				t.Error("a template that failed to compile is installed")
			}
		})
	}
}

func TestFailedRecompileKeepsPreviousVersion(t *testing.T) {
	e := NewEngine(0)
	mustAddTemplate(t, e, TemplateSource{Name: "k8srequiredlabels", Kind: "K8sRequiredLabels", Rego: requiredLabelsV0})
	mustAddConstraint(t, e, &Constraint{Kind: "K8sRequiredLabels", Name: "c", Parameters: map[string]any{"labels": []any{"owner"}}})
	if err := e.AddTemplate(context.Background(), TemplateSource{Name: "k8srequiredlabels", Kind: "K8sRequiredLabels", Rego: "package x\nviolation[{"}); err == nil {
		t.Fatal("broken update compiled")
	}
	review, target := namespaceReview(nil)
	if got, _ := e.Review(context.Background(), review, target); len(got) != 1 {
		t.Errorf("after a failed update, violations = %v, want the old template's one", got)
	}
}

func TestConstraintNeedsTemplate(t *testing.T) {
	e := NewEngine(0)
	err := e.AddConstraint(context.Background(), &Constraint{Kind: "Missing", Name: "c"})
	if err == nil || !strings.Contains(err.Error(), "no ConstraintTemplate defines kind Missing") {
		t.Fatalf("AddConstraint = %v, want it to name the missing template kind", err)
	}
}

func TestTimeoutDeniesNamingTheConstraint(t *testing.T) {
	e := NewEngine(50 * time.Millisecond)
	mustAddTemplate(t, e, TemplateSource{Name: "slow", Kind: "Slow", Rego: `package slow
violation[{"msg": "never"}] { count([x | x := numbers.range(1, 100000000)[_]; x < 0]) > 0 }`})
	mustAddConstraint(t, e, &Constraint{Kind: "Slow", Name: "slow-one"})
	review, target := namespaceReview(nil)
	start := time.Now()
	got, err := e.Review(context.Background(), review, target)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Constraint.Name != "slow-one" || !strings.Contains(got[0].Msg, "did not finish within 50ms") {
		t.Fatalf("violations = %+v, want one timeout violation for slow-one", got)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("evaluation ran %s after a 50ms timeout", d)
	}
}

func TestScopedActions(t *testing.T) {
	parse := func(entries ...any) (*Constraint, error) {
		return ParseConstraint(&unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "constraints.gatekeeper.sh/v1beta1", "kind": "K", "metadata": map[string]any{"name": "c"},
			"spec": map[string]any{"enforcementAction": "scoped", "scopedEnforcementActions": entries},
		}})
	}
	entry := func(action string, points ...string) any {
		var ps []any
		for _, p := range points {
			ps = append(ps, map[string]any{"name": p})
		}
		return map[string]any{"action": action, "enforcementPoints": ps}
	}
	c, err := parse(entry("warn", "*"), entry("deny", EnforcementPoint, "audit.gatekeeper.sh"), entry("warn", EnforcementPoint), entry("dryrun", "audit.gatekeeper.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Actions(), ","); got != "warn,deny" {
		t.Errorf("admission actions = %s, want warn,deny (in order, each once)", got)
	}
	if got := strings.Join(c.ActionsAt("audit.gatekeeper.sh"), ","); got != "warn,deny,dryrun" {
		t.Errorf("audit actions = %s, want warn,deny,dryrun", got)
	}
	if _, err := parse(entry("block", EnforcementPoint)); err == nil || !strings.Contains(err.Error(), `spec.scopedEnforcementActions[0].action: Unsupported value "block"`) {
		t.Errorf("unsupported action at the webhook: err %v", err)
	}
}
