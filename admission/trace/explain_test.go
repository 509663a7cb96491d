package trace

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
)

func TestDiffJSON(t *testing.T) {
	var before, after any
	mustJSON(t, `{"metadata":{"labels":{"a":"1","gone":"x"}},"spec":{"containers":[{"name":"c","env":[]}],"x/y":1}}`, &before)
	mustJSON(t, `{"metadata":{"labels":{"a":"2","team":"t"}},"spec":{"containers":[{"name":"c","env":[{"name":"E"}]},{"name":"sidecar"}],"x/y":1}}`, &after)
	got, _ := json.Marshal(diffJSON(nil, "", before, after))
	want := `[{"op":"replace","path":"/metadata/labels/a","value":"2"},{"op":"remove","path":"/metadata/labels/gone"},{"op":"add","path":"/metadata/labels/team","value":"t"},{"op":"add","path":"/spec/containers/0/env/-","value":{"name":"E"}},{"op":"add","path":"/spec/containers/-","value":{"name":"sidecar"}}]`
	if string(got) != want {
		t.Errorf("patch =\n%s\nwant\n%s", got, want)
	}
	if ops := diffJSON(nil, "", before, before); len(ops) != 0 {
		t.Errorf("no change gave %v", ops)
	}
}

func TestPoliciesFromAnnotations(t *testing.T) {
	annotations := map[string]string{
		"mutation.webhook.admission.k8s.io/round_0_index_10":              `{"configuration":"cfg","webhook":"late.example.com","mutated":false}`,
		"mutation.webhook.admission.k8s.io/round_0_index_2":               `{"configuration":"cfg","webhook":"inject.example.com","mutated":true}`,
		"patch.webhook.admission.k8s.io/round_0_index_2":                  `{"configuration":"cfg","webhook":"inject.example.com","patch":[{"op":"add","path":"/metadata/labels/x","value":"y"}],"patchType":"JSONPatch"}`,
		"failed-open.validating.webhook.admission.k8s.io/round_0_index_0": "down.example.com",
		"validation.policy.admission.k8s.io/validation_failure":           `[{"message":"no latest","policy":"p","binding":"b","expressionIndex":1,"validationActions":["Audit"]}]`,
		"p/reason": "audited",
	}
	policies, rest := policiesFromAnnotations(annotations)
	var got []string
	for _, p := range policies {
		s := fmt.Sprintf("%s %s %s", p.Kind, p.Name, p.Verdict)
		if p.Patch != nil {
			s += " " + string(p.Patch)
		}
		if p.ExpressionIndex != nil {
			s += fmt.Sprintf(" #%d", *p.ExpressionIndex)
		}
		got = append(got, s)
	}
	want := []string{
		"Webhook down.example.com failed-open",
		"Webhook inject.example.com patch " + `[{"op":"add","path":"/metadata/labels/x","value":"y"}]`,
		"Webhook late.example.com allow",
		"ValidatingAdmissionPolicy p audit #1",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("policies =\n%q\nwant\n%q", got, want)
	}
	if len(rest) != 1 || rest["p/reason"] != "audited" {
		t.Errorf("rest = %v, want only the policy's own audit annotation", rest)
	}
}

// annotatingPlugin mutates the pod and annotates as upstream's mutating
// webhook dispatcher does.
type annotatingPlugin struct{ *admission.Handler }

func (annotatingPlugin) Admit(_ context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	a.GetObject().(*corev1.Pod).Labels["injected"] = "yes"
	return a.AddAnnotation("mutation.webhook.admission.k8s.io/round_0_index_0", `{"configuration":"c","webhook":"w","mutated":true}`)
}

func TestDecoratorRecordsPatchAndAnnotations(t *testing.T) {
	plugin := decorate(annotatingPlugin{admission.NewHandler(admission.Create)}, "MutatingAdmissionWebhook", nil, func(admission.Attributes, admission.ObjectInterfaces) bool { return true })
	tr := &Trace{}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: map[string]string{}}}
	attrs := admission.NewAttributesRecord(pod, nil, schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, "ns", "p", schema.GroupVersionResource{Version: "v1", Resource: "pods"}, "", admission.Create, nil, false, nil)
	if err := plugin.(admission.MutationInterface).Admit(WithTrace(context.Background(), tr), attrs, nil); err != nil {
		t.Fatal(err)
	}
	step := tr.Copy().Steps[0]
	if want := `[{"op":"add","path":"/metadata/labels","value":{"injected":"yes"}}]`; string(step.Patch) != want {
		t.Errorf("patch = %s, want %s", step.Patch, want)
	}
	if len(step.Policies) != 1 || step.Policies[0].Name != "w" || step.Policies[0].Verdict != VerdictPatch {
		t.Errorf("policies = %+v, want webhook w patched", step.Policies)
	}
}

func mustJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatal(err)
	}
}
