package policytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/client-go/util/jsonpath"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/gatehouse-dev/gatehouse/admission/externaldata"
)

// PolicyTestAPIVersion and PolicyTestKind identify Gatehouse's own test
// suites (docs/policytest.md).
const (
	PolicyTestAPIVersion = "gatehouse.dev/v1alpha1"
	PolicyTestKind       = "PolicyTest"
)

// PolicyTest is a suite in Gatehouse's own format: policies of every
// engine, and cases sent through the whole admission chain.
type PolicyTest struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   map[string]any `json:"metadata,omitempty"`
	// Policies are files or directories, relative to the suite's file:
	// ValidatingAdmissionPolicies and MutatingAdmissionPolicies with
	// their bindings and params, ConstraintTemplates and constraints,
	// Gatekeeper mutators, webhook configurations, CRDs.
	Policies []string `json:"policies"`
	// Namespaces are labels of namespaces the cases use.
	Namespaces map[string]map[string]string `json:"namespaces,omitempty"`
	// ExternalData stands in for Gatekeeper external data providers:
	// each named provider is answered from its stub, nothing is sent.
	ExternalData []ProviderStub `json:"externalData,omitempty"`
	Cases        []PolicyCase   `json:"cases"`
	Skip         bool           `json:"skip,omitempty"`

	Path string `json:"-"`
}

// PolicyCase is one request and what admission must make of it.
type PolicyCase struct {
	Name string `json:"name"`
	// Object and OldObject are a file (relative to the suite) or the
	// object itself.
	Object    *ObjectRef `json:"object,omitempty"`
	OldObject *ObjectRef `json:"oldObject,omitempty"`
	// Operation is CREATE (default), UPDATE (default with oldObject) or
	// DELETE (of oldObject).
	Operation string `json:"operation,omitempty"`
	// UserInfo is who sends the request (impersonated); default the
	// cluster admin.
	UserInfo *UserInfo `json:"userInfo,omitempty"`
	// NamespaceLabels are the labels of the object's namespace.
	NamespaceLabels map[string]string `json:"namespaceLabels,omitempty"`
	Expect          Expectation       `json:"expect"`
	Skip            bool              `json:"skip,omitempty"`
}

// ProviderStub is the answer of one external data provider in a suite, in
// the shape of a ProviderResponse's response.
type ProviderStub struct {
	// Provider is the Provider's name, as templates and mutators name it.
	Provider string `json:"provider"`
	// Items answer keys, each with a value or an error; a key without an
	// item is left out of the answer.
	Items []externaldata.Item `json:"items,omitempty"`
	// SystemError, when set, fails every call.
	SystemError string `json:"systemError,omitempty"`
	// Idempotent is the answer's idempotent flag (default true);
	// Gatekeeper's mutation refuses answers that are not.
	Idempotent *bool `json:"idempotent,omitempty"`
}

// UserInfo is the user a case's request is sent as.
type UserInfo struct {
	Username string   `json:"username"`
	Groups   []string `json:"groups,omitempty"`
}

// ObjectRef is a file name or an inline object.
type ObjectRef struct {
	File   string
	Inline map[string]any
}

// UnmarshalJSON takes a string (a file) or an object. The object is
// decoded as the API machinery decodes objects: whole numbers as int64.
func (o *ObjectRef) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '"' {
		return json.Unmarshal(data, &o.File)
	}
	return utiljson.Unmarshal(data, &o.Inline)
}

// MarshalJSON writes the file name or the object.
func (o ObjectRef) MarshalJSON() ([]byte, error) {
	if o.Inline != nil {
		return json.Marshal(o.Inline)
	}
	return json.Marshal(o.File)
}

// Expectation is what a case asserts.
type Expectation struct {
	// Allowed: the request is admitted (true) or refused (false).
	Allowed *bool `json:"allowed,omitempty"`
	// Message is a regular expression the refusal's message must match.
	Message *string `json:"message,omitempty"`
	// Warnings are regular expressions that must each match a warning;
	// an empty list means no warning at all.
	Warnings *[]string `json:"warnings,omitempty"`
	// Object is a subset the object admission produced must contain
	// (maps are compared key by key, everything else whole).
	Object map[string]any `json:"object,omitempty"`
	// ObjectEquals is the whole object admission must produce, apart
	// from what the API server sets on every object (uid,
	// resourceVersion, creationTimestamp, generation, managedFields).
	ObjectEquals map[string]any `json:"objectEquals,omitempty"`
	// JSONPath assertions on the object admission produced.
	JSONPath []JSONPathAssertion `json:"jsonPath,omitempty"`
}

// JSONPathAssertion says the kubectl-style JSONPath Path of the produced
// object prints Value.
type JSONPathAssertion struct {
	Path  string `json:"path"`
	Value string `json:"value"`
}

// Outcome is what admission made of a case's request.
type Outcome struct {
	Allowed bool
	// Message is the refusal's message.
	Message  string
	Warnings []string
	// Object is the object admission produced (nil when refused, or for
	// a DELETE).
	Object map[string]any
	// Speakers say who spoke, for failure reports.
	Speakers []string
}

// decodePolicyTest decodes strictly and checks the cases.
func decodePolicyTest(u *unstructured.Unstructured) (*PolicyTest, error) {
	// Through JSON, not the unstructured converter: ObjectRef takes a
	// string or an object.
	data, err := json.Marshal(u.Object)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	t := &PolicyTest{}
	if err := dec.Decode(t); err != nil {
		return nil, err
	}
	if len(t.Policies) == 0 {
		return nil, fmt.Errorf("policies: Required value")
	}
	if err := checkProviderStubs("externalData", t.ExternalData); err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for i, c := range t.Cases {
		field := fmt.Sprintf("cases[%d]", i)
		if c.Name == "" {
			return nil, fmt.Errorf("%s.name: Required value", field)
		}
		if names[c.Name] {
			return nil, fmt.Errorf("%s.name: Duplicate value %q", field, c.Name)
		}
		names[c.Name] = true
		switch c.Operation {
		case "", "CREATE", "UPDATE", "DELETE":
		default:
			return nil, fmt.Errorf("%s.operation: Unsupported value %q: supported values: CREATE, UPDATE, DELETE", field, c.Operation)
		}
		if c.Operation != "DELETE" && c.Object == nil {
			return nil, fmt.Errorf("%s.object: Required value", field)
		}
		if (c.Operation == "UPDATE" || c.Operation == "DELETE") && c.OldObject == nil {
			return nil, fmt.Errorf("%s.oldObject: Required value for %s", field, c.Operation)
		}
		if c.Expect.Allowed == nil && c.Expect.Message == nil && c.Expect.Warnings == nil && c.Expect.Object == nil && c.Expect.ObjectEquals == nil && len(c.Expect.JSONPath) == 0 {
			return nil, fmt.Errorf("%s.expect: a case needs at least one expectation", field)
		}
		if c.Expect.Message != nil {
			if _, err := regexp.Compile(*c.Expect.Message); err != nil {
				return nil, fmt.Errorf("%s.expect.message: %w", field, err)
			}
		}
		if c.Expect.Warnings != nil {
			for j, w := range *c.Expect.Warnings {
				if _, err := regexp.Compile(w); err != nil {
					return nil, fmt.Errorf("%s.expect.warnings[%d]: %w", field, j, err)
				}
			}
		}
		for j, jp := range c.Expect.JSONPath {
			if _, err := jsonpath.Parse("", jp.Path); err != nil {
				return nil, fmt.Errorf("%s.expect.jsonPath[%d].path: %w", field, j, err)
			}
		}
	}
	return t, nil
}

// ParseProviderStubs reads a YAML or JSON list of provider stubs (the
// shape of a PolicyTest's externalData), strictly.
func ParseProviderStubs(data []byte) ([]ProviderStub, error) {
	j, err := sigsyaml.YAMLToJSON(data)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	var stubs []ProviderStub
	if err := dec.Decode(&stubs); err != nil {
		return nil, fmt.Errorf("want a list of {provider, items, systemError, idempotent}: %w", err)
	}
	if err := checkProviderStubs("", stubs); err != nil {
		return nil, err
	}
	return stubs, nil
}

func checkProviderStubs(path string, stubs []ProviderStub) error {
	providers := map[string]bool{}
	for i, stub := range stubs {
		field := fmt.Sprintf("%s[%d]", path, i)
		if stub.Provider == "" {
			return fmt.Errorf("%s.provider: Required value", field)
		}
		if providers[stub.Provider] {
			return fmt.Errorf("%s.provider: Duplicate value %q", field, stub.Provider)
		}
		providers[stub.Provider] = true
		keys := map[string]bool{}
		for j, it := range stub.Items {
			switch {
			case keys[it.Key]:
				return fmt.Errorf("%s.items[%d].key: Duplicate value %q", field, j, it.Key)
			case (it.Value == nil) == (it.Error == ""):
				return fmt.Errorf("%s.items[%d]: exactly one of value or error must be set", field, j)
			}
			keys[it.Key] = true
		}
	}
	return nil
}

// Operation is the case's operation, defaulted.
func (c PolicyCase) Op() string {
	switch {
	case c.Operation != "":
		return c.Operation
	case c.OldObject != nil:
		return "UPDATE"
	}
	return "CREATE"
}

// Evaluate compares an outcome with the expectation and says, for each
// part that does not hold, what was expected and what came.
func Evaluate(exp Expectation, got Outcome) []string {
	var out []string
	verdict := "allowed"
	if !got.Allowed {
		verdict = "denied: " + got.Message
	}
	if exp.Allowed != nil && *exp.Allowed != got.Allowed {
		want := "allowed"
		if !*exp.Allowed {
			want = "denied"
		}
		out = append(out, fmt.Sprintf("want %s, got %s", want, verdict))
	}
	if exp.Message != nil {
		re := regexp.MustCompile(*exp.Message)
		switch {
		case got.Allowed:
			out = append(out, fmt.Sprintf("want a refusal matching %q, got allowed", *exp.Message))
		case !re.MatchString(got.Message):
			out = append(out, fmt.Sprintf("want the refusal to match %q, got %q", *exp.Message, got.Message))
		}
	}
	if exp.Warnings != nil {
		if len(*exp.Warnings) == 0 && len(got.Warnings) > 0 {
			out = append(out, fmt.Sprintf("want no warnings, got %q", got.Warnings))
		}
		for _, w := range *exp.Warnings {
			re := regexp.MustCompile(w)
			if !slices.ContainsFunc(got.Warnings, re.MatchString) {
				out = append(out, fmt.Sprintf("want a warning matching %q, got %q", w, got.Warnings))
			}
		}
	}
	if exp.Object != nil || exp.ObjectEquals != nil || len(exp.JSONPath) > 0 {
		if got.Object == nil {
			return append(out, "want assertions on the object admission produced, but there is none ("+verdict+")")
		}
	}
	if exp.Object != nil {
		if diffs := subsetDiff("", exp.Object, got.Object); len(diffs) > 0 {
			out = append(out, "object: "+strings.Join(diffs, "; "))
		}
	}
	if exp.ObjectEquals != nil {
		want, have := withoutServerFields(exp.ObjectEquals), withoutServerFields(got.Object)
		if !reflect.DeepEqual(normalize(want), normalize(have)) {
			w, _ := json.Marshal(want)
			h, _ := json.Marshal(have)
			out = append(out, fmt.Sprintf("objectEquals: want %s, got %s", w, h))
		}
	}
	for _, jp := range exp.JSONPath {
		j := jsonpath.New("assertion")
		if err := j.Parse(jp.Path); err != nil {
			out = append(out, fmt.Sprintf("jsonPath %s: %v", jp.Path, err))
			continue
		}
		var b bytes.Buffer
		if err := j.Execute(&b, got.Object); err != nil {
			out = append(out, fmt.Sprintf("jsonPath %s: %v", jp.Path, err))
			continue
		}
		if b.String() != jp.Value {
			out = append(out, fmt.Sprintf("jsonPath %s: want %q, got %q", jp.Path, jp.Value, b.String()))
		}
	}
	return out
}

// subsetDiff lists where got does not contain want: maps key by key, any
// other value (lists included) compared whole.
func subsetDiff(path string, want, got any) []string {
	wm, ok := want.(map[string]any)
	if !ok {
		if !reflect.DeepEqual(normalize(want), normalize(got)) {
			w, _ := json.Marshal(want)
			g, _ := json.Marshal(got)
			return []string{fmt.Sprintf("%s: want %s, got %s", strings.TrimPrefix(path, "."), w, g)}
		}
		return nil
	}
	gm, ok := got.(map[string]any)
	if !ok {
		g, _ := json.Marshal(got)
		return []string{fmt.Sprintf("%s: want an object, got %s", strings.TrimPrefix(path, "."), g)}
	}
	var out []string
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range wm {
			if !yield(k) {
				return
			}
		}
	}) {
		gv, present := gm[k]
		if !present {
			out = append(out, fmt.Sprintf("%s: missing", strings.TrimPrefix(path+"."+k, ".")))
			continue
		}
		out = append(out, subsetDiff(path+"."+k, wm[k], gv)...)
	}
	return out
}

// normalize makes numbers comparable whatever decoded them.
func normalize(v any) any {
	data, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	_ = json.Unmarshal(data, &out)
	return out
}

func withoutServerFields(obj map[string]any) map[string]any {
	u := (&unstructured.Unstructured{Object: runtime.DeepCopyJSON(normalize(obj).(map[string]any))})
	for _, f := range [][]string{{"metadata", "uid"}, {"metadata", "resourceVersion"}, {"metadata", "creationTimestamp"}, {"metadata", "generation"}, {"metadata", "managedFields"}} {
		unstructured.RemoveNestedField(u.Object, f...)
	}
	return u.Object
}
