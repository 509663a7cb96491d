package constraint

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
)

// labelsExternalData answers each key with its upper case, and "bad" with
// a per-key error; calls counts the builtin's calls.
type labelsExternalData struct{ calls atomic.Int32 }

func (x *labelsExternalData) ExternalData(_ context.Context, provider string, keys []string) map[string]any {
	x.calls.Add(1)
	if provider != "labels" {
		return map[string]any{"responses": nil, "errors": nil, "status_code": 400, "system_error": "key is not found in provider cache"}
	}
	responses, errs := []any{}, []any{}
	for _, k := range keys {
		if k == "bad" {
			errs = append(errs, []any{k, "no such label"})
			continue
		}
		responses = append(responses, []any{k, strings.ToUpper(k)})
	}
	return map[string]any{"responses": responses, "errors": errs, "status_code": 200, "system_error": ""}
}

const externalDataTemplate = `package k8sexternallabels

violation[{"msg": msg}] {
	keys := [k | input.review.object.metadata.labels[k]]
	response := external_data({"provider": input.parameters.provider, "keys": keys})
	response.system_error != ""
	msg := sprintf("provider %s: %s (HTTP %d)", [input.parameters.provider, response.system_error, response.status_code])
}

violation[{"msg": msg}] {
	keys := [k | input.review.object.metadata.labels[k]]
	response := external_data({"provider": input.parameters.provider, "keys": keys})
	[key, err] := response.errors[_]
	msg := sprintf("label %s: %s", [key, err])
}

violation[{"msg": msg}] {
	keys := [k | input.review.object.metadata.labels[k]]
	response := external_data({"provider": input.parameters.provider, "keys": keys})
	[key, value] := response.responses[_]
	value == "FORBIDDEN"
	msg := sprintf("label %s is forbidden", [key])
}
`

// TestExternalDataBuiltin: templates call external_data with Gatekeeper's
// input and read Gatekeeper's answer shape; the same call within one
// evaluation is made once (memoized); without SetExternalData the template
// does not compile, as in gator.
func TestExternalDataBuiltin(t *testing.T) {
	ctx := context.Background()
	src := TemplateSource{Name: "k8sexternallabels", Kind: "K8sExternalLabels", Rego: externalDataTemplate}
	if err := NewEngine(0).AddTemplate(ctx, src); err == nil || !strings.Contains(err.Error(), "undefined function external_data") {
		t.Fatalf("without external data: %v, want undefined function external_data", err)
	}

	e := NewEngine(0)
	x := &labelsExternalData{}
	e.SetExternalData(x)
	mustAddTemplate(t, e, src)
	mustAddConstraint(t, e, &Constraint{Kind: "K8sExternalLabels", Name: "known", Parameters: map[string]any{"provider": "labels"}})
	mustAddConstraint(t, e, &Constraint{Kind: "K8sExternalLabels", Name: "unknown", Parameters: map[string]any{"provider": "nowhere"}})

	review, target := namespaceReview(map[string]any{"bad": "x", "forbidden": "y", "fine": "z"})
	got, err := e.Review(ctx, review, target)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, v := range got {
		msgs = append(msgs, v.Constraint.Name+": "+v.Msg)
	}
	want := []string{
		"known: label bad: no such label",
		"known: label forbidden is forbidden",
		"unknown: provider nowhere: key is not found in provider cache (HTTP 400)",
	}
	if strings.Join(msgs, "\n") != strings.Join(want, "\n") {
		t.Errorf("violations:\n%s\nwant:\n%s", strings.Join(msgs, "\n"), strings.Join(want, "\n"))
	}
	// Three rules make the same call per constraint: memoized, one each.
	if n := x.calls.Load(); n != 2 {
		t.Errorf("external_data answered %d calls, want 2 (one per constraint)", n)
	}
}
