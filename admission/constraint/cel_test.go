package constraint

import (
	"context"

	"errors"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
	"sigs.k8s.io/yaml"
)

// celAllowedReposTemplate is written as the gatekeeper-library writes its
// K8sNativeValidation code: variables over anyObject and params, a
// messageExpression, and a Rego twin that Gatekeeper does not run.
const celAllowedReposTemplate = `
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8scelallowedrepos
spec:
  crd:
    spec:
      names:
        kind: K8sCELAllowedRepos
      validation:
        openAPIV3Schema:
          type: object
          properties:
            repos:
              type: array
              items:
                type: string
  targets:
  - target: admission.k8s.gatekeeper.sh
    code:
    - engine: K8sNativeValidation
      source:
        variables:
        - name: containers
          expression: 'has(variables.anyObject.spec.containers) ? variables.anyObject.spec.containers : []'
        - name: badContainers
          expression: |
            variables.containers.filter(c, !variables.params.repos.exists(r, c.image.startsWith(r)))
        validations:
        - expression: 'size(variables.badContainers) == 0'
          messageExpression: '"container <" + variables.badContainers[0].name + "> has an invalid image repo <" + variables.badContainers[0].image + ">, allowed repos are " + variables.params.repos.join(", ")'
    - engine: Rego
      source:
        rego: |
          package k8scelallowedrepos
          violation[{"msg": "the Rego twin ran"}] { true }
`

func parseTemplateYAML(t *testing.T, doc string) *Template {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatal(err)
	}
	tmpl, err := ParseTemplate(u)
	if err != nil {
		t.Fatalf("ParseTemplate: %v", err)
	}
	return tmpl
}

// podRequest is a Pod request as the plugin builds it: the review and
// the target with the request's attributes.
func podRequest(t *testing.T, op admission.Operation, obj, old runtime.Object) (map[string]any, *Target) {
	t.Helper()
	var options runtime.Object = testCreateOptions()
	if op == admission.Delete {
		options = &metav1.DeleteOptions{}
	}
	attrs := admission.NewAttributesRecord(obj, old, testPodGVK, "default", "web", testPodGVR, "", op, options, false,
		&user.DefaultInfo{Name: "alice", Groups: []string{"dev"}})
	review, versioned, err := newReview(attrs, testObjectInterfaces(t))
	if err != nil {
		t.Fatal(err)
	}
	target := &Target{GVK: testPodGVK, Namespace: "default", Name: "web", Attributes: versioned}
	target.Object, _ = review["object"].(map[string]any)
	target.OldObject, _ = review["oldObject"].(map[string]any)
	return review, target
}

func messages(vs []Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Constraint.Name+": "+v.Msg)
	}
	return out
}

func TestCELTemplate(t *testing.T) {
	ctx := context.Background()
	tmpl := parseTemplateYAML(t, celAllowedReposTemplate)
	if tmpl.CEL == nil || tmpl.CELField != "spec.targets[0].code[0].source" {
		t.Fatalf("CEL source not read: %+v", tmpl)
	}
	e := NewEngine(0)
	mustAddTemplate(t, e, tmpl.Source())
	constraint, err := ParseConstraint(&unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "constraints.gatekeeper.sh/v1beta1", "kind": "K8sCELAllowedRepos", "metadata": map[string]any{"name": "repos"},
		"spec": map[string]any{"parameters": map[string]any{"repos": []any{"registry.local/", "mirror.local/"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	mustAddConstraint(t, e, constraint)

	tests := []struct {
		name     string
		op       admission.Operation
		obj, old runtime.Object
		want     []string
	}{
		{"create allowed", admission.Create, testPod("registry.local/nginx:1.27"), nil, nil},
		{"create denied: the CEL code runs, not its Rego twin", admission.Create, testPod("nginx:1.27"), nil,
			[]string{"repos: container <nginx> has an invalid image repo <nginx:1.27>, allowed repos are registry.local/, mirror.local/"}},
		{"update sees the new object", admission.Update, testPod("mirror.local/nginx"), testPod("nginx"), nil},
		{"delete: anyObject is oldObject", admission.Delete, nil, testPod("docker.io/nginx"),
			[]string{"repos: container <nginx> has an invalid image repo <docker.io/nginx>, allowed repos are registry.local/, mirror.local/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			review, target := podRequest(t, tt.op, tt.obj, tt.old)
			got, err := e.Review(ctx, review, target)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(messages(got), tt.want) {
				t.Errorf("violations = %q, want %q", messages(got), tt.want)
			}
		})
	}
}

// celSource builds a one-validation CEL template source.
func celSource(validation CELValidation, extra func(*CELSource)) TemplateSource {
	src := &CELSource{Validations: []CELValidation{validation}}
	if extra != nil {
		extra(src)
	}
	return TemplateSource{Name: "k8scel", Kind: "K8sCEL", CEL: src}
}

func TestCELSemantics(t *testing.T) {
	ctx := context.Background()
	ignore := "Ignore"
	tests := []struct {
		name   string
		src    TemplateSource
		params map[string]any
		op     admission.Operation
		want   []string
	}{
		{"params is null without spec.parameters",
			celSource(CELValidation{Expression: "variables.params == null", Message: "params should be null"}, nil), nil, admission.Create, nil},
		{"params are spec.parameters, integers stay integers",
			celSource(CELValidation{Expression: "variables.params.max < 2", MessageExpression: `"max is " + string(variables.params.max + 1 - 1)`}, nil),
			map[string]any{"max": int64(3)}, admission.Create, []string{"c: max is 3"}},
		{"validations do not see the constraint as params",
			celSource(CELValidation{Expression: "variables.params.max == 3"}, nil), map[string]any{"max": int64(3)}, admission.Create, nil},
		{"message falls back to the expression",
			celSource(CELValidation{Expression: "object.metadata.name != 'web'"}, nil), nil, admission.Create,
			[]string{"c: failed expression: object.metadata.name != 'web'"}},
		{"request and the user are there",
			celSource(CELValidation{Expression: "request.userInfo.username != 'alice'", MessageExpression: `request.operation + " by " + request.userInfo.username`}, nil),
			nil, admission.Create, []string{"c: CREATE by alice"}},
		{"object is null on DELETE, anyObject is not",
			celSource(CELValidation{Expression: "object == null && variables.anyObject.metadata.name == 'web' && oldObject != null"}, nil), nil, admission.Delete, nil},
		{"a runtime error denies under the default failurePolicy Fail",
			celSource(CELValidation{Expression: "object.spec.missing == 1"}, nil), nil, admission.Create,
			[]string{"c: expression 'object.spec.missing == 1' resulted in error: no such key: missing"}},
		{"a runtime error is ignored under failurePolicy Ignore",
			celSource(CELValidation{Expression: "object.spec.missing == 1"}, func(s *CELSource) { s.FailurePolicy = &ignore }), nil, admission.Create, nil},
		{"matchCondition false skips the validations",
			celSource(CELValidation{Expression: "false"}, func(s *CELSource) {
				s.MatchConditions = []CELExpression{{Name: "only-jobs", Expression: "object.metadata.name == 'job'"}}
			}), nil, admission.Create, nil},
		{"matchCondition true runs them",
			celSource(CELValidation{Expression: "false", Message: "denied"}, func(s *CELSource) {
				s.MatchConditions = []CELExpression{{Name: "web", Expression: "object.metadata.name == 'web'"}}
			}), nil, admission.Create, []string{"c: denied"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEngine(0)
			mustAddTemplate(t, e, tt.src)
			mustAddConstraint(t, e, &Constraint{Kind: "K8sCEL", Name: "c", Parameters: tt.params})
			var review map[string]any
			var target *Target
			if tt.op == admission.Delete {
				review, target = podRequest(t, tt.op, nil, testPod("nginx"))
			} else {
				review, target = podRequest(t, tt.op, testPod("nginx"), nil)
			}
			got, err := e.Review(ctx, review, target)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(messages(got), tt.want) {
				t.Errorf("violations = %q, want %q", messages(got), tt.want)
			}
		})
	}
}

func TestCELNamespaceObject(t *testing.T) {
	e := NewEngine(0)
	mustAddTemplate(t, e, celSource(CELValidation{
		Expression:        "namespaceObject.metadata.labels.env == 'prod'",
		MessageExpression: `"namespace " + namespaceObject.metadata.name + " is " + namespaceObject.metadata.labels.env`,
	}, nil))
	mustAddConstraint(t, e, &Constraint{Kind: "K8sCEL", Name: "c"})
	review, target := podRequest(t, admission.Create, testPod("nginx"), nil)
	target.NamespaceObject = map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "default", "labels": map[string]any{"env": "dev"}}}
	got, err := e.Review(context.Background(), review, target)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"c: namespace default is dev"}; !slices.Equal(messages(got), want) {
		t.Errorf("violations = %q, want %q", messages(got), want)
	}
}

func TestCELAudit(t *testing.T) {
	e := NewEngine(0)
	mustAddTemplate(t, e, parseTemplateYAML(t, celAllowedReposTemplate).Source())
	mustAddConstraint(t, e, &Constraint{Kind: "K8sCELAllowedRepos", Name: "repos", Parameters: map[string]any{"repos": []any{"registry.local/"}}})
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(testPod("nginx"))
	if err != nil {
		t.Fatal(err)
	}
	obj := &unstructured.Unstructured{Object: content}
	review, err := AuditReview(obj, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.Review(context.Background(), review, AuditTarget(obj, nil))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"repos: container <nginx> has an invalid image repo <nginx>, allowed repos are registry.local/"}; !slices.Equal(messages(got), want) {
		t.Errorf("audit violations = %q, want %q", messages(got), want)
	}
}

func TestCELCompileErrors(t *testing.T) {
	bad := "Sometimes"
	tests := []struct {
		name string
		src  TemplateSource
		want []string
	}{
		{"syntax", celSource(CELValidation{Expression: "object.metadata.name =="}, nil),
			[]string{"template k8scel: source.validations[0].expression: compilation failed: ERROR: <input>:1:24: Syntax error"}},
		{"not a bool", celSource(CELValidation{Expression: "object.metadata.name"}, nil),
			[]string{"source.validations[0].expression:", "must evaluate to bool"}},
		{"message expression", celSource(CELValidation{Expression: "true", MessageExpression: "1 +"}, nil),
			[]string{"source.validations[0].messageExpression:"}},
		{"unknown variable", celSource(CELValidation{Expression: "variables.nope"}, nil),
			[]string{"source.validations[0].expression:", "nope"}},
		{"params are not for validations", celSource(CELValidation{Expression: "params.spec.parameters.x == 1"}, nil),
			[]string{"source.validations[0].expression:", "undeclared reference to 'params'"}},
		{"variable", celSource(CELValidation{Expression: "true"}, func(s *CELSource) { s.Variables = []CELExpression{{Name: "v", Expression: "object.("}} }),
			[]string{"source.variables[0].expression:"}},
		{"reserved variable", celSource(CELValidation{Expression: "true"}, func(s *CELSource) { s.Variables = []CELExpression{{Name: "anyObject", Expression: "1"}} }),
			[]string{`source.variables[0].name: "anyObject" is reserved`}},
		{"reserved prefix", celSource(CELValidation{Expression: "true"}, func(s *CELSource) {
			s.MatchConditions = []CELExpression{{Name: "gatekeeper_internal_x", Expression: "true"}}
		}), []string{`source.matchCondition[0].name: "gatekeeper_internal_x": the prefix "gatekeeper_internal_" is reserved`}},
		{"failure policy", celSource(CELValidation{Expression: "true"}, func(s *CELSource) { s.FailurePolicy = &bad }),
			[]string{`source.failurePolicy: Unsupported value "Sometimes": supported values: Fail, Ignore`}},
		{"no validations", TemplateSource{Name: "k8scel", Kind: "K8sCEL", CEL: &CELSource{}},
			[]string{"source.validations: Required value"}},
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
			if e.HasTemplate("K8sCEL") {
				t.Error("a template that failed to compile is installed")
			}
			if err := e.Check(tt.src); err == nil {
				t.Error("Check accepted what AddTemplate refused")
			}
		})
	}
}

func TestCELSourceIsStrict(t *testing.T) {
	u := &unstructured.Unstructured{}
	doc := strings.Replace(celAllowedReposTemplate, "        validations:", "        validation:", 1)
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatal(err)
	}
	_, err := ParseTemplate(u)
	if err == nil || !strings.Contains(err.Error(), "spec.targets[0].code[0].source") || !strings.Contains(err.Error(), `unknown field "validation"`) {
		t.Fatalf("ParseTemplate = %v, want the misspelled field named", err)
	}
}

func TestConstraintValidator(t *testing.T) {
	tmpl := parseTemplateYAML(t, celAllowedReposTemplate)
	v, err := NewConstraintValidator(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	constraint := func(params any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "constraints.gatekeeper.sh/v1beta1", "kind": "K8sCELAllowedRepos", "metadata": map[string]any{"name": "c"},
			"spec": map[string]any{"parameters": map[string]any{"repos": params}},
		}}
	}
	if _, err := v.Validate(constraint([]any{"a/"})); err != nil {
		t.Errorf("valid constraint refused: %v", err)
	}
	_, err = v.Validate(constraint("a/"))
	var se *SchemaError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "spec.parameters.repos") {
		t.Errorf("repos as a string: %v, want a SchemaError naming spec.parameters.repos", err)
	}
	wrongKind := constraint([]any{"a/"})
	wrongKind.SetKind("Other")
	if _, err := v.Validate(wrongKind); err == nil {
		t.Error("a constraint of another kind was accepted")
	}
}

func TestRequestReview(t *testing.T) {
	e := NewEngine(0)
	mustAddTemplate(t, e, parseTemplateYAML(t, celAllowedReposTemplate).Source())
	mustAddTemplate(t, e, TemplateSource{Name: "k8srequiredlabels", Kind: "K8sRequiredLabels", Rego: requiredLabelsV0})
	mustAddConstraint(t, e, &Constraint{Kind: "K8sCELAllowedRepos", Name: "repos", Parameters: map[string]any{"repos": []any{"registry.local/"}}})
	mustAddConstraint(t, e, &Constraint{Kind: "K8sRequiredLabels", Name: "labels", Parameters: map[string]any{"labels": []any{"team"}}})
	pod := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"default"},"spec":{"containers":[{"name":"c","image":"nginx"}]}}`
	req := &admissionv1.AdmissionRequest{
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Name:      "web",
		Namespace: "default",
		Operation: admissionv1.Delete,
		UserInfo:  authenticationv1.UserInfo{Username: "alice"},
		OldObject: runtime.RawExtension{Raw: []byte(pod)},
	}
	review, target, err := RequestReview(req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if review["object"] == nil {
		t.Error("DELETE review has no object; Gatekeeper gives it the old one")
	}
	got, err := e.Review(context.Background(), review, target)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"repos: container <c> has an invalid image repo <nginx>, allowed repos are registry.local/", "labels: you must provide labels: {\"team\"}"}
	if !slices.Equal(messages(got), want) {
		t.Errorf("violations = %q, want %q", messages(got), want)
	}
	if _, _, err := RequestReview(&admissionv1.AdmissionRequest{Operation: admissionv1.Create}, nil); err == nil {
		t.Error("a request without objects was accepted")
	}
}
