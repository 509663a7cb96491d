package policytest

import (
	"strings"
	"testing"
	"testing/fstest"
)

func mapFS(files map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for name, data := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(data)}
	}
	return fsys
}

func ptr[T any](v T) *T { return &v }

func TestEvaluate(t *testing.T) {
	produced := map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "c", "namespace": "d", "uid": "u-1", "resourceVersion": "7", "labels": map[string]any{"a": "b", "x": "y"}},
		"data":     map[string]any{"n": "1"},
	}
	allowed := Outcome{Allowed: true, Warnings: []string{"careful: owner missing"}, Object: produced}
	denied := Outcome{Allowed: false, Message: `configmaps "c" is forbidden: no`}
	tests := []struct {
		name string
		exp  Expectation
		got  Outcome
		want []string // substrings of the failures, in order; none: passes
	}{
		{"allowed as expected", Expectation{Allowed: ptr(true)}, allowed, nil},
		{"denied, wanted allowed", Expectation{Allowed: ptr(true)}, denied, []string{`want allowed, got denied: configmaps "c" is forbidden: no`}},
		{"allowed, wanted denied", Expectation{Allowed: ptr(false)}, allowed, []string{"want denied, got allowed"}},
		{"message matches", Expectation{Message: ptr("forbidden: no$")}, denied, nil},
		{"message differs", Expectation{Message: ptr("yes")}, denied, []string{`want the refusal to match "yes", got`}},
		{"message on an allowed request", Expectation{Message: ptr("x")}, allowed, []string{`want a refusal matching "x", got allowed`}},
		{"warning matches", Expectation{Warnings: &[]string{"owner"}}, allowed, nil},
		{"warning missing", Expectation{Warnings: &[]string{"team"}}, allowed, []string{`want a warning matching "team"`}},
		{"no warnings wanted", Expectation{Warnings: &[]string{}}, allowed, []string{"want no warnings"}},
		{"subset holds", Expectation{Object: map[string]any{"metadata": map[string]any{"labels": map[string]any{"a": "b"}}}}, allowed, nil},
		{"subset differs", Expectation{Object: map[string]any{"metadata": map[string]any{"labels": map[string]any{"a": "c", "z": "1"}}, "data": map[string]any{"n": int64(1)}}}, allowed,
			[]string{`object: data.n: want 1, got "1"; metadata.labels.a: want "c", got "b"; metadata.labels.z: missing`}},
		{"equals without server fields", Expectation{ObjectEquals: map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "c", "namespace": "d", "labels": map[string]any{"a": "b", "x": "y"}}, "data": map[string]any{"n": "1"}}}, allowed, nil},
		{"equals differs", Expectation{ObjectEquals: map[string]any{"apiVersion": "v1", "kind": "ConfigMap"}}, allowed, []string{"objectEquals: want"}},
		{"jsonPath holds", Expectation{JSONPath: []JSONPathAssertion{{Path: "{.metadata.labels.x}", Value: "y"}}}, allowed, nil},
		{"jsonPath differs", Expectation{JSONPath: []JSONPathAssertion{{Path: "{.data.n}", Value: "2"}}}, allowed, []string{`jsonPath {.data.n}: want "2", got "1"`}},
		{"object assertions on a refusal", Expectation{Object: map[string]any{"a": "b"}}, denied, []string{"want assertions on the object admission produced, but there is none"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Evaluate(tt.exp, tt.got)
			if len(got) != len(tt.want) {
				t.Fatalf("failures %q, want %d matching %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("failure %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestDecodePolicyTestErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"policies: [p]\ncases:\n- name: a\n  object: o.yaml\n", "cases[0].expect: a case needs at least one expectation"},
		{"cases: []\n", "policies: Required value"},
		{"policies: [p]\ncases:\n- name: a\n  operation: PATCH\n  object: o.yaml\n  expect: {allowed: true}\n", `cases[0].operation: Unsupported value "PATCH"`},
		{"policies: [p]\ncases:\n- name: a\n  operation: UPDATE\n  object: o.yaml\n  expect: {allowed: true}\n", "cases[0].oldObject: Required value for UPDATE"},
		{"policies: [p]\ncases:\n- name: a\n  object: o.yaml\n  expect: {allowd: true}\n", `unknown field "allowd"`},
		{"policies: [p]\ncases:\n- name: a\n  object: o.yaml\n  expect: {allowed: true}\n- name: a\n  object: o.yaml\n  expect: {allowed: true}\n", `cases[1].name: Duplicate value "a"`},
		{"policies: [p]\nexternalData:\n- items: [{key: a, value: b}]\ncases: []\n", "externalData[0].provider: Required value"},
		{"policies: [p]\nexternalData:\n- provider: p\n- provider: p\ncases: []\n", `externalData[1].provider: Duplicate value "p"`},
		{"policies: [p]\nexternalData:\n- provider: p\n  items: [{key: a, value: b, error: c}]\ncases: []\n", "externalData[0].items[0]: exactly one of value or error must be set"},
		{"policies: [p]\nexternalData:\n- provider: p\n  items: [{key: a, value: b}, {key: a, error: c}]\ncases: []\n", `externalData[0].items[1].key: Duplicate value "a"`},
		{"policies: [p]\nexternalData:\n- provider: p\n  items: [{key: a, vaule: b}]\ncases: []\n", `unknown field "vaule"`},
	} {
		fsys := map[string]string{"s.yaml": "apiVersion: gatehouse.dev/v1alpha1\nkind: PolicyTest\n" + tc.doc}
		_, err := Find(mapFS(fsys), []string{"s.yaml"})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.doc, err, tc.want)
		}
	}
}

func TestInlineObjectNumbersAreIntegers(t *testing.T) {
	var ref ObjectRef
	if err := ref.UnmarshalJSON([]byte(`{"spec": {"replicas": 3, "ratio": 0.5}}`)); err != nil {
		t.Fatal(err)
	}
	spec := ref.Inline["spec"].(map[string]any)
	if _, ok := spec["replicas"].(int64); !ok {
		t.Errorf("replicas is %T, want int64 as the API machinery decodes it", spec["replicas"])
	}
	if _, ok := spec["ratio"].(float64); !ok {
		t.Errorf("ratio is %T, want float64", spec["ratio"])
	}
}

func TestParseProviderStubs(t *testing.T) {
	stubs, err := ParseProviderStubs([]byte("- provider: p\n  items: [{key: a, value: b}, {key: c, error: d}]\n  idempotent: false\n"))
	if err != nil || len(stubs) != 1 || len(stubs[0].Items) != 2 || stubs[0].Idempotent == nil || *stubs[0].Idempotent {
		t.Fatalf("stubs %+v, err %v", stubs, err)
	}
	for doc, want := range map[string]string{
		"provider: p\n":               "want a list",
		"- provider: p\n  item: []\n": `unknown field "item"`,
		"- items: []\n":               "[0].provider: Required value",
	} {
		if _, err := ParseProviderStubs([]byte(doc)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", doc, err, want)
		}
	}
}
