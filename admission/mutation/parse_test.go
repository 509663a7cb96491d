package mutation

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// fromYAML decodes a manifest as the API server's JSON decoder would
// (integers as int64).
func fromYAML(t testing.TB, s string) *unstructured.Unstructured {
	t.Helper()
	data, err := yaml.YAMLToJSON([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(data); err != nil {
		t.Fatal(err)
	}
	return u
}

func mustParse(t testing.TB, s string) *Mutator {
	t.Helper()
	m, err := Parse(fromYAML(t, s))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return m
}

// assignYAML is an Assign on v1 Pods with the given location and
// parameters (indented as under spec.parameters).
func assignYAML(name, location, params string) string {
	return `
apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata: {name: ` + name + `, generation: 1}
spec:
  applyTo: [{groups: [""], versions: [v1], kinds: [Pod]}]
  location: '` + location + `'
  parameters:
` + indent(params, "    ")
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestParseKinds(t *testing.T) {
	for _, tc := range []struct {
		name, manifest string
		check          func(t *testing.T, m *Mutator)
	}{
		{"Assign v1", assignYAML("a", "spec.containers[name: *].imagePullPolicy", "assign: {value: Always}"), func(t *testing.T, m *Mutator) {
			if m.value != "Always" || m.String() != "Assign//a:1" || m.Location().String() != "spec.containers[name: *].imagePullPolicy" {
				t.Errorf("got value %v, String %s, location %s", m.value, m, m.Location())
			}
		}},
		{"Assign v1beta1", strings.Replace(assignYAML("a", "spec.x", "assign: {value: 3}"), "/v1\n", "/v1beta1\n", 1), func(t *testing.T, m *Mutator) {
			if m.value != int64(3) {
				t.Errorf("value = %#v, want int64(3)", m.value)
			}
		}},
		{"AssignMetadata v1alpha1", `
apiVersion: mutations.gatekeeper.sh/v1alpha1
kind: AssignMetadata
metadata: {name: owner}
spec:
  location: metadata.labels.owner
  parameters: {assign: {fromMetadata: {field: namespace}}}
`, func(t *testing.T, m *Mutator) {
			if m.fromMetadata != "namespace" || m.applyTo != nil || m.tests[2] != MustNotExist {
				t.Errorf("got %+v", m)
			}
		}},
		{"ModifySet default operation", `
apiVersion: mutations.gatekeeper.sh/v1
kind: ModifySet
metadata: {name: args}
spec:
  applyTo: [{groups: [""], versions: [v1], kinds: [Pod], operations: [CREATE]}]
  location: 'spec.containers[name: *].args'
  parameters: {values: {fromList: [--a, 2]}}
`, func(t *testing.T, m *Mutator) {
			if m.setOp != OpMerge || len(m.setValues) != 2 || m.applyTo[0].operations[0] != "CREATE" {
				t.Errorf("got %+v", m)
			}
		}},
		{"AssignImage", `
apiVersion: mutations.gatekeeper.sh/v1alpha1
kind: AssignImage
metadata: {name: img}
spec:
  applyTo: [{groups: [""], versions: [v1], kinds: [Pod]}]
  location: 'spec.containers[name:*].image'
  parameters: {assignDomain: foocorp.org, assignTag: "@sha256:abcde67890123456789abc345678901a"}
`, func(t *testing.T, m *Mutator) {
			if m.image != (imageParts{domain: "foocorp.org", tag: "@sha256:abcde67890123456789abc345678901a"}) {
				t.Errorf("got %+v", m.image)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, mustParse(t, tc.manifest))
		})
	}
}

func TestParseErrors(t *testing.T) {
	modifySet := func(location, params string) string {
		return `
apiVersion: mutations.gatekeeper.sh/v1
kind: ModifySet
metadata: {name: m}
spec:
  applyTo: [{groups: [""], versions: [v1], kinds: [Pod]}]
  location: '` + location + `'
  parameters:
` + indent(params, "    ")
	}
	assignImage := func(location, params string) string {
		return `
apiVersion: mutations.gatekeeper.sh/v1alpha1
kind: AssignImage
metadata: {name: i}
spec:
  applyTo: [{groups: [""], versions: [v1], kinds: [Pod]}]
  location: '` + location + `'
  parameters:
` + indent(params, "    ")
	}
	assignMetadata := func(location, params string) string {
		return `
apiVersion: mutations.gatekeeper.sh/v1
kind: AssignMetadata
metadata: {name: am}
spec:
  location: '` + location + `'
  parameters:
` + indent(params, "    ")
	}
	withSpec := func(manifest, from, to string) string {
		if !strings.Contains(manifest, from) {
			panic(from)
		}
		return strings.Replace(manifest, from, to, 1)
	}
	okAssign := assignYAML("a", "spec.x", "assign: {value: 1}")
	for _, tc := range []struct{ name, manifest, want string }{
		// Object-level.
		{"not a mutator", strings.Replace(okAssign, "kind: Assign", "kind: Pod", 1), "kind: Pod.mutations.gatekeeper.sh is not a mutator (want Assign, AssignMetadata, ModifySet or AssignImage in mutations.gatekeeper.sh)"},
		{"wrong group", strings.Replace(okAssign, "mutations.gatekeeper.sh/v1", "example.com/v1", 1), "kind: Assign.example.com is not a mutator (want Assign, AssignMetadata, ModifySet or AssignImage in mutations.gatekeeper.sh)"},
		{"unserved version", strings.Replace(okAssign, "/v1\n", "/v2\n", 1), "apiVersion: mutations.gatekeeper.sh/v2 is not served for Assign (served: v1, v1alpha1, v1beta1)"},
		{"AssignImage v1", strings.Replace(assignImage("spec.containers[name: *].image", "assignDomain: a.io"), "v1alpha1", "v1", 1), "apiVersion: mutations.gatekeeper.sh/v1 is not served for AssignImage (served: v1alpha1)"},
		{"long name", strings.Replace(okAssign, "name: a,", "name: "+strings.Repeat("n", 64)+",", 1), "metadata.name: maximum name length is 63 characters, got 64"},
		{"no spec", "apiVersion: mutations.gatekeeper.sh/v1\nkind: Assign\nmetadata: {name: a}\n", "spec: Required value"},
		{"unknown spec field", withSpec(okAssign, "  location:", "  locaton: x\n  location:"), `spec: unknown field "locaton"`},

		// location.
		{"no location", withSpec(okAssign, "  location: 'spec.x'\n", ""), "spec.location: Required value"},
		{"bad location", assignYAML("a", "spec.containers[name: foo", "assign: {value: 1}"), `spec.location: invalid path "spec.containers[name: foo": position 25: expected "]" after the list key value, found the end of the path`},
		{"location not a string", withSpec(okAssign, "location: 'spec.x'", "location: 3"), "spec.location: must be a string, got a number"},
		{"Assign on metadata", assignYAML("a", "metadata.labels.x", "assign: {value: y}"), "spec.location: Assign can't change metadata; use AssignMetadata"},
		{"Assign changes the list key", assignYAML("a", "spec.containers[name: foo].name", "assign: {value: bar}"), `spec.location: spec.containers[name: foo].name would change the list element's key "name", which is not allowed`},
		{"Assign to globbed element", assignYAML("a", "spec.containers[name: *]", "assign: {value: {name: x}}"), "spec.location: spec.containers[name: *]: can't assign to a globbed list element; name the element's key"},

		// applyTo.
		{"no applyTo", withSpec(okAssign, `  applyTo: [{groups: [""], versions: [v1], kinds: [Pod]}]`+"\n", ""), "spec.applyTo: Required value: Assign needs the groups, versions and kinds it mutates"},
		{"applyTo without versions", withSpec(okAssign, `versions: [v1], `, ""), "spec.applyTo[0]: groups, versions and kinds must all be set"},
		{"applyTo DELETE", withSpec(okAssign, `kinds: [Pod]}`, `kinds: [Pod], operations: [CREATE, DELETE]}`), `spec.applyTo[0].operations[1]: Unsupported value "DELETE": supported values: "CREATE", "UPDATE", "*" (Gatekeeper mutates only on create and update)`},
		{"applyTo duplicate operation", withSpec(okAssign, `kinds: [Pod]}`, `kinds: [Pod], operations: [UPDATE, UPDATE]}`), `spec.applyTo[0].operations[1]: Duplicate value "UPDATE"`},
		{"applyTo * with others", withSpec(okAssign, `kinds: [Pod]}`, `kinds: [Pod], operations: ["*", CREATE]}`), `spec.applyTo[0].operations: "*" must not be combined with other operations`},
		{"applyTo unknown field", withSpec(okAssign, `kinds: [Pod]}`, `kind: [Pod]}`), `spec.applyTo[0]: unknown field "kind"`},
		{"AssignMetadata applyTo", withSpec(assignMetadata("metadata.labels.x", "assign: {value: y}"), "spec:\n", "spec:\n  applyTo: [{groups: [\"\"], versions: [v1], kinds: [Pod]}]\n"), "spec.applyTo: AssignMetadata has no applyTo (it applies to every kind; use spec.match.kinds)"},

		// match.
		{"match typo", withSpec(okAssign, "  location:", "  match: {namespace: [dev]}\n  location:"), `spec.match: strict decoding error: unknown field "namespace"`},
		{"match source", withSpec(okAssign, "  location:", "  match: {source: Mine}\n  location:"), `spec.match.source: Unsupported value "Mine": supported values: "All", "Generated", "Original"`},
		{"match namespace glob", withSpec(okAssign, "  location:", "  match: {excludedNamespaces: [kube-system, 'a*b*c']}\n  location:"), `spec.match.excludedNamespaces[1]: Invalid value "a*b*c": must match ^\*?[-:a-z0-9]*\*?$ (a name with an optional leading and trailing *)`},
		{"match selector", withSpec(okAssign, "  location:", "  match: {labelSelector: {matchExpressions: [{key: a, operator: Sometimes}]}}\n  location:"), `spec.match.labelSelector: "Sometimes" is not a valid label selector operator`},

		// assign.
		{"no parameters", withSpec(okAssign, "  parameters:\n    assign: {value: 1}\n", ""), "spec.parameters.assign: Required value"},
		{"assign nothing", assignYAML("a", "spec.x", "assign: {}"), "spec.parameters.assign: exactly one of value, fromMetadata or externalData must be set, got 0"},
		{"assign null value", assignYAML("a", "spec.x", "assign: {value: null}"), "spec.parameters.assign: exactly one of value, fromMetadata or externalData must be set, got 0"},
		{"assign two", assignYAML("a", "spec.x", "assign: {value: 1, fromMetadata: {field: name}}"), "spec.parameters.assign: exactly one of value, fromMetadata or externalData must be set, got 2"},
		{"externalData without provider", assignYAML("a", "spec.x", "assign: {externalData: {dataSource: Username}}"), "spec.parameters.assign.externalData.provider: Required value"},
		{"externalData dataSource", assignYAML("a", "spec.x", "assign: {externalData: {provider: p, dataSource: Header}}"), `spec.parameters.assign.externalData.dataSource: Unsupported value "Header": supported values: "ValueAtLocation", "Username"`},
		{"externalData failurePolicy", assignYAML("a", "spec.x", "assign: {externalData: {provider: p, failurePolicy: Retry}}"), `spec.parameters.assign.externalData.failurePolicy: Unsupported value "Retry": supported values: "UseDefault", "Ignore", "Fail"`},
		{"externalData UseDefault without default", assignYAML("a", "spec.x", "assign: {externalData: {provider: p, failurePolicy: UseDefault}}"), "spec.parameters.assign.externalData.default: `default` must not be empty when `failurePolicy` is set to `UseDefault`"},
		{"externalData unknown field", assignYAML("a", "spec.x", "assign: {externalData: {provider: p, timeout: 3}}"), `spec.parameters.assign.externalData: unknown field "timeout"`},
		{"externalData to a list element", assignYAML("a", "spec.containers[name: foo]", "assign: {externalData: {provider: p}}"), "spec.location: spec.containers[name: foo]: cannot assign external data response to a list"},
		{"fromMetadata field", assignYAML("a", "spec.x", "assign: {fromMetadata: {field: uid}}"), `spec.parameters.assign.fromMetadata.field: Unsupported value "uid": supported values: "namespace", "name"`},
		{"fromMetadata to list", assignYAML("a", "spec.containers[name: x]", "assign: {fromMetadata: {field: name}}"), "spec.parameters.assign.fromMetadata: cannot assign a metadata field to the list element spec.containers[name: x]"},
		{"non-object into keyed list", assignYAML("a", "spec.containers[name: x]", "assign: {value: x}"), "spec.parameters.assign.value: must be an object to be put in the keyed list at spec.containers[name: x], got a string"},
		{"keyed element with another key", assignYAML("a", "spec.containers[name: x]", "assign: {value: {name: z}}"), `spec.parameters.assign.value.name: must be "x", the key the location spec.containers[name: x] selects, got "z"`},
		{"keyed element without key", assignYAML("a", "spec.ports[port: 80]", "assign: {value: {protocol: TCP}}"), `spec.parameters.assign.value.port: must be 80, the key the location spec.ports[port: 80] selects, got nothing`},
		{"assignIf", assignYAML("a", "spec.x", "assign: {value: 1}\nassignIf: {in: [2]}"), "spec.parameters.assignIf: not supported: Gatekeeper removed assignIf because value conditions let mutators oscillate forever; use pathTests"},
		{"unknown parameter", assignYAML("a", "spec.x", "assign: {value: 1}\nassignDomain: x.io"), `spec.parameters: unknown field "assignDomain"`},
		{"unknown assign field", assignYAML("a", "spec.x", "assign: {value: 1, values: 2}"), `spec.parameters.assign: unknown field "values"`},

		// pathTests.
		{"pathTest not a prefix", assignYAML("a", "spec.x.y", "assign: {value: 1}\npathTests: [{subPath: spec.z, condition: MustExist}]"), "spec.parameters.pathTests[0].subPath: spec.z is not a prefix of the location spec.x.y"},
		{"pathTest glob vs key", assignYAML("a", "spec.c[name: *].y", "assign: {value: 1}\npathTests: [{subPath: 'spec.c[name: x]', condition: MustExist}]"), "spec.parameters.pathTests[0].subPath: spec.c[name: x] is not a prefix of the location spec.c[name: *].y"},
		{"pathTest bad path", assignYAML("a", "spec.x.y", "assign: {value: 1}\npathTests: [{subPath: 'spec.', condition: MustExist}]"), `spec.parameters.pathTests[0].subPath: invalid path "spec.": position 4: trailing "."`},
		{"pathTest condition", assignYAML("a", "spec.x.y", "assign: {value: 1}\npathTests: [{subPath: spec.x, condition: Exists}]"), `spec.parameters.pathTests[0].condition: Unsupported value "Exists": supported values: "MustExist", "MustNotExist"`},
		{"pathTest no condition", assignYAML("a", "spec.x.y", "assign: {value: 1}\npathTests: [{subPath: spec.x}]"), `spec.parameters.pathTests[0].condition: Unsupported value "": supported values: "MustExist", "MustNotExist"`},
		{"pathTest no subPath", assignYAML("a", "spec.x.y", "assign: {value: 1}\npathTests: [{condition: MustExist}]"), "spec.parameters.pathTests[0].subPath: Required value"},
		{"pathTest both", assignYAML("a", "spec.x.y", "assign: {value: 1}\npathTests: [{subPath: spec.x, condition: MustExist}, {subPath: spec.x, condition: MustNotExist}]"), "spec.parameters.pathTests[1]: conflicting path test conditions: spec.x is marked both MustExist and MustNotExist"},
		{"pathTest MustExist after MustNotExist", assignYAML("a", "spec.x.y", "assign: {value: 1}\npathTests: [{subPath: spec.x.y, condition: MustNotExist}, {subPath: spec.x, condition: MustExist}]"), "spec.parameters.pathTests[1]: conflicting path test conditions: a MustExist test may not follow the MustNotExist test pathTests[0]"},
		{"pathTest unknown field", assignYAML("a", "spec.x.y", "assign: {value: 1}\npathTests: [{subpath: spec.x, condition: MustExist}]"), `spec.parameters.pathTests[0]: unknown field "subpath"`},

		// AssignMetadata.
		{"AssignMetadata spec", assignMetadata("spec.x", "assign: {value: y}"), "spec.location: AssignMetadata can only set metadata.labels.<key> or metadata.annotations.<key>, got spec.x"},
		{"AssignMetadata whole labels", assignMetadata("metadata.labels", "assign: {value: y}"), "spec.location: AssignMetadata can only set metadata.labels.<key> or metadata.annotations.<key>, got metadata.labels"},
		{"AssignMetadata name", assignMetadata("metadata.name.x", "assign: {value: y}"), "spec.location: AssignMetadata can only set metadata.labels.<key> or metadata.annotations.<key>, got metadata.name.x"},
		{"AssignMetadata non-string", assignMetadata("metadata.labels.x", "assign: {value: 3}"), "spec.parameters.assign.value: must be a string for AssignMetadata, got a number"},
		{"AssignMetadata pathTests", assignMetadata("metadata.labels.x", "assign: {value: y}\npathTests: []"), `spec.parameters: unknown field "pathTests"`},
		{"AssignMetadata externalData from the location", assignMetadata("metadata.labels.x", "assign: {externalData: {provider: p}}"), "spec.parameters.assign.externalData.dataSource: only username data source is supported for assignmetadata am"},

		// ModifySet.
		{"ModifySet keyed list", modifySet("spec.containers[name: foo]", "values: {fromList: [a]}"), "spec.location: spec.containers[name: foo] ends in a keyed list element; a ModifySet location names the field that holds the list"},
		{"ModifySet metadata", modifySet("metadata.finalizers", "values: {fromList: [a]}"), "spec.location: ModifySet can't change metadata"},
		{"ModifySet operation", modifySet("spec.x", "operation: replace\nvalues: {fromList: [a]}"), `spec.parameters.operation: Unsupported value "replace": supported values: "merge", "prune"`},
		{"ModifySet no values", modifySet("spec.x", "operation: prune"), "spec.parameters.values.fromList: Required value"},
		{"ModifySet values not a list", modifySet("spec.x", "values: {fromList: a}"), "spec.parameters.values.fromList: must be a list, got a string"},
		{"ModifySet unknown values field", modifySet("spec.x", "values: {fromList: [a], toList: [b]}"), `spec.parameters.values: unknown field "toList"`},

		// AssignImage.
		{"AssignImage nothing", assignImage("spec.containers[name: *].image", "pathTests: []"), "spec.parameters: at least one of assignDomain, assignPath or assignTag must be set"},
		{"AssignImage domain", assignImage("spec.containers[name: *].image", "assignDomain: foocorp"), `spec.parameters.assignDomain: "foocorp" must be a fully-qualified domain name or localhost, with an optional port`},
		{"AssignImage domain slash", assignImage("spec.containers[name: *].image", "assignDomain: foocorp.org/"), `spec.parameters.assignDomain: "foocorp.org/" must be a fully-qualified domain name or localhost, with an optional port`},
		{"AssignImage path", assignImage("spec.containers[name: *].image", "assignPath: Library/NGINX"), `spec.parameters.assignPath: "Library/NGINX" must be a valid image path (lower-case alphanumeric components separated by /, ., _, __ or dashes)`},
		{"AssignImage path with tag", assignImage("spec.containers[name: *].image", "assignPath: nginx:latest"), `spec.parameters.assignPath: "nginx:latest" must be a valid image path (lower-case alphanumeric components separated by /, ., _, __ or dashes)`},
		{"AssignImage tag", assignImage("spec.containers[name: *].image", "assignTag: latest"), `spec.parameters.assignTag: "latest" must be a tag starting with ':' or a digest starting with '@'`},
		{"AssignImage domain-like path", assignImage("spec.containers[name: *].image", "assignPath: gcr.io/repo"), `spec.parameters.assignDomain: Required value: assignPath "gcr.io/repo" starts with what would be read as a domain ("gcr.io"), so assignDomain must be set too`},
		{"AssignImage list", assignImage("spec.containers[name: foo]", "assignTag: ':v1'"), "spec.location: spec.containers[name: foo] ends in a list element; AssignImage sets a string field"},
		{"AssignImage metadata", assignImage("metadata.annotations.image", "assignTag: ':v1'"), "spec.location: AssignImage can't change metadata"},
		{"AssignImage key", assignImage("spec.containers[image: foo].image", "assignTag: ':v1'"), `spec.location: spec.containers[image: foo].image would change the list element's key "image", which is not allowed`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse(fromYAML(t, tc.manifest))
			if err == nil {
				t.Fatalf("Parse = %+v, want error %q", m, tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("Parse error\n got: %s\nwant: %s", err, tc.want)
			}
		})
	}
}

// TestParseAccepts covers mutators Gatekeeper accepts that a stricter
// reading might reject.
func TestParseAccepts(t *testing.T) {
	for _, tc := range []struct{ name, manifest string }{
		{"pathTests parent MustExist then child MustNotExist (the docs' example)", assignYAML("a", "spec.containers[name: foo].securityContext.capabilities", `
assign: {value: {drop: [ALL]}}
pathTests:
- {subPath: "spec.containers[name: foo]", condition: MustExist}
- {subPath: "spec.containers[name: foo].securityContext.capabilities", condition: MustNotExist}
`)},
		{"keyed element with an integer key", assignYAML("a", "spec.ports[port: 80]", "assign: {value: {port: 80, protocol: TCP}}")},
		{"ModifySet ending under a list element", `
apiVersion: mutations.gatekeeper.sh/v1
kind: ModifySet
metadata: {name: m}
spec:
  applyTo: [{groups: [""], versions: [v1], kinds: [Pod]}]
  location: 'spec.containers[name: foo].name'
  parameters: {operation: prune, values: {fromList: []}}
`},
		{"AssignImage localhost domain and digest", `
apiVersion: mutations.gatekeeper.sh/v1alpha1
kind: AssignImage
metadata: {name: i}
spec:
  applyTo: [{groups: [""], versions: [v1], kinds: [Pod], operations: ["*"]}]
  location: 'spec.initContainers[name:*].image'
  parameters: {assignDomain: "localhost:5000", assignPath: library/busybox}
`},
		{"status and unknown metadata are ignored", strings.Replace(assignYAML("a", "spec.x", "assign: {value: 1}"), "metadata: {", "status: {byPod: [{id: x}]}\nmetadata: {uid: u, ", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustParse(t, tc.manifest)
		})
	}
}
