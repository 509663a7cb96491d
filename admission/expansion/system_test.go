package expansion

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/gatehouse-dev/gatehouse/admission/constraint"
	"github.com/gatehouse-dev/gatehouse/admission/mutation"
)

func fromYAML(t *testing.T, s string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(s), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

const expandDeployments = `apiVersion: expansion.gatekeeper.sh/v1beta1
kind: ExpansionTemplate
metadata:
  name: expand-deployments
spec:
  applyTo:
  - groups: [apps]
    kinds: [Deployment, ReplicaSet]
    versions: [v1]
  templateSource: spec.template
  generatedGVK: {group: "", version: v1, kind: Pod}
`

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: Web
  namespace: shop
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: nginx:1.27
`

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ name, edit, want string }{
		{"no source", "  templateSource: spec.template\n|", "spec.templateSource: Required value"},
		{"bad source", "spec.template\n|spec..template\n", `spec.templateSource: Invalid value "spec..template"`},
		{"no generatedGVK", `  generatedGVK: {group: "", version: v1, kind: Pod}` + "\n|", "spec.generatedGVK: Required value"},
		{"generatedGVK without version", "version: v1, kind: Pod|kind: Pod", "spec.generatedGVK: Invalid value"},
		{"unknown field", "  templateSource:|  templateSorce:", "templateSorce"},
		{"bad action", "  templateSource:|  enforcementAction: block\n  templateSource:", `spec.enforcementAction: Unsupported value "block"`},
		{"applyTo without versions", "    versions: [v1]\n|", "spec.applyTo[0]: groups, versions and kinds are all required"},
		{"itself", "    versions: [v1]\n|    versions: [v1]\n  - groups: [\"\"]\n    kinds: [Pod]\n    versions: [v1]\n", "spec.applyTo[1]: Pod expands into itself"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old, repl, _ := strings.Cut(tc.edit, "|")
			doc := strings.Replace(expandDeployments, old, repl, 1)
			if doc == expandDeployments {
				t.Fatalf("edit %q changed nothing", tc.edit)
			}
			_, err := Parse(fromYAML(t, doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := Parse(fromYAML(t, expandDeployments)); err != nil {
		t.Errorf("the example template: %v", err)
	}
}

func mustMutator(t *testing.T, s string) *mutation.Mutator {
	t.Helper()
	m, err := mutation.Parse(fromYAML(t, s))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func labelMutator(name, source, value string) string {
	return `apiVersion: mutations.gatekeeper.sh/v1
kind: AssignMetadata
metadata:
  name: ` + name + `
spec:
  match:
    source: ` + source + `
  location: metadata.labels.` + name + `
  parameters:
    assign:
      value: "` + value + `"
`
}

func TestExpand(t *testing.T) {
	mutators := mutation.NewSystem()
	for _, m := range []string{labelMutator("generated", "Generated", "yes"), labelMutator("original", "Original", "yes"), labelMutator("all", "All", "yes")} {
		if err := mutators.Upsert(mustMutator(t, m)); err != nil {
			t.Fatal(err)
		}
	}
	sys := NewSystem(mutators)
	tmpl, err := Parse(fromYAML(t, expandDeployments))
	if err != nil {
		t.Fatal(err)
	}
	sys.Upsert(tmpl)
	if got := sys.Generators(); strings.Join(got, ",") != "Deployment,ReplicaSet" {
		t.Errorf("Generators = %v", got)
	}

	deploy := fromYAML(t, deployment)
	before, _ := yaml.Marshal(deploy.Object)
	out, err := sys.Expand(deploy, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 {
		t.Fatalf("%d resultants, want 1", len(out))
	}
	pod := out[0].Object
	if pod.GetKind() != "Pod" || pod.GetAPIVersion() != "v1" || pod.GetName() != "web-pod" || pod.GetNamespace() != "shop" || out[0].Template != "expand-deployments" {
		t.Errorf("resultant = %s %s %s/%s from %s", pod.GetAPIVersion(), pod.GetKind(), pod.GetNamespace(), pod.GetName(), out[0].Template)
	}
	labels := pod.GetLabels()
	if labels["app"] != "web" || labels["generated"] != "yes" || labels["all"] != "yes" || labels["original"] != "" {
		t.Errorf("resultant labels = %v, want app, generated and all (not original)", labels)
	}
	if after, _ := yaml.Marshal(deploy.Object); string(after) != string(before) {
		t.Errorf("Expand changed the workload:\n%s", after)
	}

	// Kinds no template names expand into nothing.
	job := fromYAML(t, strings.Replace(strings.Replace(deployment, "apps/v1", "batch/v1", 1), "kind: Deployment", "kind: Job", 1))
	if out, err := sys.Expand(job, nil); err != nil || len(out) != 0 {
		t.Errorf("Expand(Job) = %v, %v; want nothing", out, err)
	}
	// A workload without the source field is an error naming it.
	bare := fromYAML(t, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bare, namespace: shop}\nspec: {}\n")
	if _, err := sys.Expand(bare, nil); err == nil || !strings.Contains(err.Error(), "has no field spec.template") {
		t.Errorf("Expand(no spec.template) = %v", err)
	}
	sys.Remove("expand-deployments")
	if sys.Has("expand-deployments") || len(sys.Generators()) != 0 {
		t.Error("Remove left the template in force")
	}
}

const needsTeam = `package k8sneedsteam

violation[{"msg": msg}] {
	not input.review.object.metadata.labels.team
	msg := sprintf("%v %v has no team label", [input.review.kind.kind, input.review.object.metadata.name])
}
`

func constraintFor(t *testing.T, name, source string) *constraint.Constraint {
	t.Helper()
	c, err := constraint.ParseConstraint(fromYAML(t, `apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sNeedsTeam
metadata:
  name: `+name+`
spec:
  match:
    source: `+source+`
    kinds:
    - apiGroups: [""]
      kinds: [Pod]
`))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConstraintsReviewWhatWorkloadsExpandInto(t *testing.T) {
	ctx := context.Background()
	engine := constraint.NewEngine(0)
	if err := engine.AddTemplate(ctx, constraint.TemplateSource{Name: "k8sneedsteam", Kind: "K8sNeedsTeam", Rego: needsTeam}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*constraint.Constraint{constraintFor(t, "pods-all", "All"), constraintFor(t, "pods-original", "Original"), constraintFor(t, "pods-generated", "Generated")} {
		if err := engine.AddConstraint(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	sys := NewSystem(nil)
	tmpl, _ := Parse(fromYAML(t, strings.Replace(expandDeployments, "  templateSource:", "  enforcementAction: warn\n  templateSource:", 1)))
	sys.Upsert(tmpl)

	deploy := fromYAML(t, deployment)
	// Without an expander nothing is expanded.
	if vs, err := engine.ReviewExpanded(ctx, deploy, nil, nil); err != nil || len(vs) != 0 {
		t.Fatalf("ReviewExpanded without an expander = %v, %v", vs, err)
	}
	engine.SetExpander(sys)
	vs, err := engine.ReviewExpanded(ctx, deploy, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]constraint.Violation{}
	for _, v := range vs {
		got[v.Constraint.Name] = v
	}
	if _, ok := got["pods-original"]; ok || len(got) != 2 {
		t.Fatalf("violations from %v, want pods-all and pods-generated only (source Original skips resultants)", got)
	}
	v := got["pods-all"]
	if v.Msg != "[Implied by expand-deployments] Pod web-pod has no team label" {
		t.Errorf("message = %q", v.Msg)
	}
	if acts := v.Actions(); len(acts) != 1 || acts[0] != "warn" {
		t.Errorf("actions = %v, want the template's override [warn]", acts)
	}
}
