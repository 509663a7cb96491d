package mutation

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
)

var (
	podGVK       = schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	serviceGVK   = schema.GroupVersionKind{Version: "v1", Kind: "Service"}
	namespaceGVK = schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}
)

func nsObject(name string, kv ...string) map[string]any {
	labels := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		labels[kv[i]] = kv[i+1]
	}
	return map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name, "labels": labels}}
}

// createIn is a CREATE of a kind in namespace ns, whose Namespace is known
// (with labels kv).
func createIn(gvk schema.GroupVersionKind, ns string, kv ...string) *Request {
	return &Request{Operation: admission.Create, GVK: gvk, Namespace: ns, NamespaceObject: nsObject(ns, kv...)}
}

func newSystem(t testing.TB, manifests ...string) *System {
	t.Helper()
	s := NewSystem()
	for _, m := range manifests {
		if err := s.Upsert(mustParse(t, m)); err != nil {
			t.Fatalf("Upsert: %v", err)
		}
	}
	return s
}

const testPod = `
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: dev}
spec:
  containers:
  - {name: main, image: nginx}
  - {name: log, image: busybox, imagePullPolicy: IfNotPresent}
`

// Mutators from Gatekeeper's documentation (website/docs/mutation.md) and
// the gatekeeper-library.
const (
	pullPolicyAlways = `
apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata: {name: demo-image-pull-policy, generation: 1}
spec:
  applyTo:
  - groups: [""]
    kinds: ["Pod"]
    versions: ["v1"]
  match:
    scope: Namespaced
    kinds:
    - apiGroups: ["*"]
      kinds: ["Pod"]
    excludedNamespaces: ["system"]
  location: "spec.containers[name:*].imagePullPolicy"
  parameters:
    assign:
      value: Always
`
	sidecar = `
apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata: {name: demo-sidecar, generation: 2}
spec:
  applyTo:
  - groups: [""]
    kinds: ["Pod"]
    versions: ["v1"]
  location: "spec.containers[name:networking]"
  parameters:
    assign:
      value:
        name: "networking"
        imagePullPolicy: Always
        image: quay.io/foo/bar:latest
        command: ["/bin/bash", "-c", "sleep INF"]
`
	privileged = `
apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata: {name: demo-privileged, generation: 1}
spec:
  applyTo:
  - groups: [""]
    kinds: ["Pod"]
    versions: ["v1"]
  match:
    scope: Namespaced
    kinds:
    - apiGroups: ["*"]
      kinds: ["Pod"]
    namespaces: ["dev"]
  location: "spec.containers[name:main].securityContext.privileged"
  parameters:
    assign:
      value: false
    pathTests:
    - subPath: "spec.containers[name:main]"
      condition: MustExist
`
	// k8spspdefaultallowprivilegeescalation (gatekeeper-library).
	allowPrivilegeEscalation = `
apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata: {name: k8spspdefaultallowprivilegeescalation, generation: 1}
spec:
  applyTo:
  - groups: [""]
    kinds: ["Pod"]
    versions: ["v1"]
  match:
    scope: Namespaced
    kinds:
    - apiGroups: ["*"]
      kinds: ["Pod"]
    excludedNamespaces: ["kube-system"]
  location: "spec.containers[name:*].securityContext.allowPrivilegeEscalation"
  parameters:
    pathTests:
    - subPath: "spec.containers[name:*].securityContext.allowPrivilegeEscalation"
      condition: MustNotExist
    assign:
      value: false
`
	ownerLabel = `
apiVersion: mutations.gatekeeper.sh/v1
kind: AssignMetadata
metadata: {name: demo-annotation-owner, generation: 1}
spec:
  match:
    scope: Namespaced
  location: "metadata.labels.owner"
  parameters:
    assign:
      value: "admin"
`
	removeErrLogging = `
apiVersion: mutations.gatekeeper.sh/v1
kind: ModifySet
metadata: {name: remove-err-logging, generation: 1}
spec:
  applyTo:
  - groups: [""]
    kinds: ["Pod"]
    versions: ["v1"]
  location: "spec.containers[name: *].args"
  parameters:
    operation: prune
    values:
      fromList:
        - --alsologtostderr
`
	assignRegistry = `
apiVersion: mutations.gatekeeper.sh/v1alpha1
kind: AssignImage
metadata: {name: assign-container-image-registry, generation: 1}
spec:
  applyTo:
  - groups: [ "" ]
    kinds: [ "Pod" ]
    versions: [ "v1" ]
  location: "spec.containers[name:*].image"
  parameters:
    assignDomain: "mycompany.registry.io"
  match:
    source: "All"
    scope: Namespaced
    kinds:
    - apiGroups: [ "*" ]
      kinds: [ "Pod" ]
`
)

// withMatch puts a spec.match (YAML flow) into a manifest that has none.
func withMatch(manifest, match string) string {
	return strings.Replace(manifest, "\nspec:\n", "\nspec:\n  match: "+match+"\n", 1)
}

type mutateCase struct {
	name     string
	mutators []string
	req      *Request // default: CREATE of a Pod in "dev"
	in       string
	// want is the object after Mutate; "" when it must be unchanged.
	want    string
	applied []string
	// err is a regexp the error must match.
	err string
}

func (tc mutateCase) run(t *testing.T) {
	t.Helper()
	s := newSystem(t, tc.mutators...)
	req := tc.req
	if req == nil {
		req = createIn(podGVK, "dev")
	}
	obj := fromYAML(t, tc.in)
	orig := obj.DeepCopy()
	changed, applied, err := s.Mutate(req, obj)
	if tc.err != "" {
		if err == nil || !regexp.MustCompile(tc.err).MatchString(err.Error()) {
			t.Fatalf("Mutate error = %v, want one matching %q", err, tc.err)
		}
		if diff := cmp.Diff(orig.Object, obj.Object); diff != "" {
			t.Errorf("the object changed although Mutate failed (-before +after):\n%s", diff)
		}
		return
	}
	if err != nil {
		t.Fatalf("Mutate: %v", err)
	}
	want := orig
	if tc.want != "" {
		want = fromYAML(t, tc.want)
	}
	if diff := cmp.Diff(want.Object, obj.Object); diff != "" {
		t.Errorf("object (-want +got):\n%s", diff)
	}
	if changed != (tc.want != "") {
		t.Errorf("changed = %v, want %v", changed, tc.want != "")
	}
	if diff := cmp.Diff(tc.applied, applied); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
}

func TestAssign(t *testing.T) {
	for _, tc := range []mutateCase{
		{
			name:     "imagePullPolicy on every container",
			mutators: []string{pullPolicyAlways},
			in:       testPod,
			want: `
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: dev}
spec:
  containers:
  - {name: main, image: nginx, imagePullPolicy: Always}
  - {name: log, image: busybox, imagePullPolicy: Always}
`,
			applied: []string{"Assign//demo-image-pull-policy:1"},
		},
		{
			name:     "excluded namespace",
			mutators: []string{pullPolicyAlways},
			req:      createIn(podGVK, "system"),
			in:       strings.Replace(testPod, "namespace: dev", "namespace: system", 1),
		},
		{
			name:     "a glob creates no element",
			mutators: []string{pullPolicyAlways},
			in:       "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {containers: []}}",
		},
		{
			name:     "a glob creates no list or parent",
			mutators: []string{pullPolicyAlways},
			in:       "{apiVersion: v1, kind: Pod, metadata: {name: web}}",
		},
		{
			name:     "sidecar added as a keyed list element",
			mutators: []string{sidecar},
			in:       testPod,
			want: `
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: dev}
spec:
  containers:
  - {name: main, image: nginx}
  - {name: log, image: busybox, imagePullPolicy: IfNotPresent}
  - {name: networking, imagePullPolicy: Always, image: "quay.io/foo/bar:latest", command: [/bin/bash, -c, sleep INF]}
`,
			applied: []string{"Assign//demo-sidecar:2"},
		},
		{
			name:     "sidecar replaces the element with its key, whole",
			mutators: []string{sidecar},
			in: `
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - {name: networking, image: "old:1", env: [{name: A, value: b}]}
  - {name: main, image: nginx}
`,
			want: `
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - {name: networking, imagePullPolicy: Always, image: "quay.io/foo/bar:latest", command: [/bin/bash, -c, sleep INF]}
  - {name: main, image: nginx}
`,
			applied: []string{"Assign//demo-sidecar:2"},
		},
		{
			name:     "sidecar already there",
			mutators: []string{sidecar},
			in: `
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - {name: networking, imagePullPolicy: Always, image: "quay.io/foo/bar:latest", command: [/bin/bash, -c, sleep INF]}
`,
		},
		{
			name:     "a missing keyed element is created with its key",
			mutators: []string{assignYAML("sc", "spec.containers[name: foo].securityContext.privileged", "assign: {value: false}")},
			in:       testPod,
			want: `
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: dev}
spec:
  containers:
  - {name: main, image: nginx}
  - {name: log, image: busybox, imagePullPolicy: IfNotPresent}
  - {name: foo, securityContext: {privileged: false}}
`,
			applied: []string{"Assign//sc:1"},
		},
		{
			name:     "pathTests MustExist: the element exists",
			mutators: []string{privileged},
			in:       testPod,
			want: `
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: dev}
spec:
  containers:
  - {name: main, image: nginx, securityContext: {privileged: false}}
  - {name: log, image: busybox, imagePullPolicy: IfNotPresent}
`,
			applied: []string{"Assign//demo-privileged:1"},
		},
		{
			name:     "pathTests MustExist: the element is missing",
			mutators: []string{privileged},
			in:       strings.Replace(testPod, "name: main", "name: app", 1),
		},
		{
			name:     "pathTests MustNotExist: a default that keeps set values",
			mutators: []string{allowPrivilegeEscalation},
			in: `
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: dev}
spec:
  containers:
  - {name: a, image: nginx}
  - {name: b, image: nginx, securityContext: {allowPrivilegeEscalation: true}}
  - {name: c, image: nginx, securityContext: {runAsUser: 1000}}
`,
			want: `
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: dev}
spec:
  containers:
  - {name: a, image: nginx, securityContext: {allowPrivilegeEscalation: false}}
  - {name: b, image: nginx, securityContext: {allowPrivilegeEscalation: true}}
  - {name: c, image: nginx, securityContext: {runAsUser: 1000, allowPrivilegeEscalation: false}}
`,
			applied: []string{"Assign//k8spspdefaultallowprivilegeescalation:1"},
		},
		{
			name: "pathTests MustNotExist on a glob is never satisfied",
			mutators: []string{assignYAML("g", "spec.containers[name: *].tty", `
assign: {value: true}
pathTests: [{subPath: "spec.containers[name: *]", condition: MustNotExist}]`)},
			in: testPod,
		},
		{
			name: "pathTests MustNotExist on a missing parent",
			mutators: []string{assignYAML("dns", "spec.dnsConfig.options", `
assign: {value: [{name: ndots, value: "2"}]}
pathTests: [{subPath: spec.dnsConfig, condition: MustNotExist}]`)},
			in: "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {dnsConfig: {nameservers: [1.1.1.1]}}}",
		},
		{
			name: "pathTests MustNotExist on a missing parent, absent",
			mutators: []string{assignYAML("dns", "spec.dnsConfig.options", `
assign: {value: [{name: ndots, value: "2"}]}
pathTests: [{subPath: spec.dnsConfig, condition: MustNotExist}]`)},
			in:      "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {}}",
			want:    `{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {dnsConfig: {options: [{name: ndots, value: "2"}]}}}`,
			applied: []string{"Assign//dns:1"},
		},
		{
			name:     "an integer list key",
			mutators: []string{strings.Replace(assignYAML("proto", "spec.ports[port: 80].protocol", "assign: {value: TCP}"), "kinds: [Pod]", "kinds: [Service]", 1)},
			req:      createIn(serviceGVK, "dev"),
			in:       "{apiVersion: v1, kind: Service, metadata: {name: s}, spec: {ports: [{port: 443}, {port: 80, name: http}]}}",
			want:     "{apiVersion: v1, kind: Service, metadata: {name: s}, spec: {ports: [{port: 443}, {port: 80, name: http, protocol: TCP}]}}",
			applied:  []string{"Assign//proto:1"},
		},
		{
			name:     "an integer list key creates its element",
			mutators: []string{strings.Replace(assignYAML("metrics", "spec.ports[port: 9090].name", "assign: {value: metrics}"), "kinds: [Pod]", "kinds: [Service]", 1)},
			req:      createIn(serviceGVK, "dev"),
			in:       "{apiVersion: v1, kind: Service, metadata: {name: s}, spec: {ports: [{port: 80}]}}",
			want:     "{apiVersion: v1, kind: Service, metadata: {name: s}, spec: {ports: [{port: 80}, {port: 9090, name: metrics}]}}",
			applied:  []string{"Assign//metrics:1"},
		},
		{
			name:     "a string key does not select an integer field",
			mutators: []string{strings.Replace(assignYAML("proto", `spec.ports[port: "80"].protocol`, "assign: {value: TCP}"), "kinds: [Pod]", "kinds: [Service]", 1)},
			req:      createIn(serviceGVK, "dev"),
			in:       "{apiVersion: v1, kind: Service, metadata: {name: s}, spec: {ports: [{port: 80}]}}",
			want:     `{apiVersion: v1, kind: Service, metadata: {name: s}, spec: {ports: [{port: 80}, {port: "80", protocol: TCP}]}}`,
			applied:  []string{"Assign//proto:1"},
		},
		{
			name:     "an object value",
			mutators: []string{assignYAML("tol", "spec.tolerations", "assign: {value: [{key: dedicated, operator: Equal, value: web, effect: NoSchedule}]}")},
			in:       "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {tolerations: [{key: old}]}}",
			want:     "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {tolerations: [{key: dedicated, operator: Equal, value: web, effect: NoSchedule}]}}",
			applied:  []string{"Assign//tol:1"},
		},
		{
			name:     "the same number is no change",
			mutators: []string{assignYAML("grace", "spec.terminationGracePeriodSeconds", "assign: {value: 30}")},
			in:       "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {terminationGracePeriodSeconds: 30}}",
		},
		{
			name:     "fromMetadata name",
			mutators: []string{assignYAML("host", "spec.hostname", "assign: {fromMetadata: {field: name}}")},
			in:       testPod,
			want:     strings.Replace(testPod, "spec:\n", "spec:\n  hostname: web\n", 1),
			applied:  []string{"Assign//host:1"},
		},
		{
			name:     "fromMetadata namespace is the request's, and the object keeps no namespace",
			mutators: []string{assignYAML("sub", "spec.subdomain", "assign: {fromMetadata: {field: namespace}}")},
			in:       "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {}}",
			want:     "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {subdomain: dev}}",
			applied:  []string{"Assign//sub:1"},
		},
		{
			name:     "a type mismatch names the location",
			mutators: []string{assignYAML("bad", "spec.containers.image", "assign: {value: x}")},
			in:       testPod,
			err:      `^mutation [0-9a-f-]{36} for mutator Assign//bad failed for  Pod dev web: location spec.containers.image: spec.containers is a list, but the location needs an object there$`,
		},
		{
			name:     "a type mismatch under a glob",
			mutators: []string{assignYAML("bad", "spec.containers[name: *].env[name: A].value", "assign: {value: x}")},
			in:       "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {containers: [{name: a, env: {A: b}}]}}",
			err:      `: location spec.containers\[name: \*\].env\[name: A\].value: spec.containers\[name: \*\].env is an object, but the location needs a list there$`,
		},
		{
			name:     "a keyed list of non-objects",
			mutators: []string{sidecar},
			in:       "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {containers: [main]}}",
			err:      `: location spec.containers\[name: networking\]: an element of spec.containers is a string, but the location needs objects there$`,
		},
	} {
		t.Run(tc.name, tc.run)
	}
}

func TestAssignMetadata(t *testing.T) {
	annotation := strings.NewReplacer("demo-annotation-owner", "owner-annotation", "metadata.labels.owner", "metadata.annotations.owner").Replace(ownerLabel)
	nsLabel := `
apiVersion: mutations.gatekeeper.sh/v1beta1
kind: AssignMetadata
metadata: {name: ns-label, generation: 4}
spec:
  location: metadata.labels.namespace
  parameters: {assign: {fromMetadata: {field: namespace}}}
`
	for _, tc := range []mutateCase{
		{
			name:     "adds a label",
			mutators: []string{ownerLabel},
			in:       testPod,
			want:     strings.Replace(testPod, "namespace: dev}", "namespace: dev, labels: {owner: admin}}", 1),
			applied:  []string{"AssignMetadata//demo-annotation-owner:1"},
		},
		{
			name:     "never overwrites a label",
			mutators: []string{ownerLabel},
			in:       strings.Replace(testPod, "namespace: dev}", "namespace: dev, labels: {owner: bob}}", 1),
		},
		{
			name:     "an empty label is a label",
			mutators: []string{ownerLabel},
			in:       strings.Replace(testPod, "namespace: dev}", "namespace: dev, labels: {owner: ''}}", 1),
		},
		{
			name:     "adds an annotation next to others",
			mutators: []string{annotation},
			in:       strings.Replace(testPod, "namespace: dev}", "namespace: dev, annotations: {a: b}}", 1),
			want:     strings.Replace(testPod, "namespace: dev}", "namespace: dev, annotations: {a: b, owner: admin}}", 1),
			applied:  []string{"AssignMetadata//owner-annotation:1"},
		},
		{
			name:     "applies to any kind (no applyTo)",
			mutators: []string{annotation},
			req:      createIn(schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, "dev"),
			in:       "{apiVersion: apps/v1, kind: Deployment, metadata: {name: d}}",
			want:     "{apiVersion: apps/v1, kind: Deployment, metadata: {name: d, annotations: {owner: admin}}}",
			applied:  []string{"AssignMetadata//owner-annotation:1"},
		},
		{
			name:     "scope Namespaced skips cluster-scoped objects",
			mutators: []string{ownerLabel},
			req:      &Request{Operation: admission.Create, GVK: schema.GroupVersionKind{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole"}},
			in:       "{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, metadata: {name: r}}",
		},
		{
			name:     "fromMetadata namespace",
			mutators: []string{nsLabel},
			in:       "{apiVersion: v1, kind: Pod, metadata: {name: web}}",
			want:     "{apiVersion: v1, kind: Pod, metadata: {name: web, labels: {namespace: dev}}}",
			applied:  []string{"AssignMetadata//ns-label:4"},
		},
		{
			name:     "fromMetadata namespace of a Namespace is empty",
			mutators: []string{nsLabel},
			req:      &Request{Operation: admission.Create, GVK: namespaceGVK},
			in:       "{apiVersion: v1, kind: Namespace, metadata: {name: team-a}}",
			want:     "{apiVersion: v1, kind: Namespace, metadata: {name: team-a, labels: {namespace: ''}}}",
			applied:  []string{"AssignMetadata//ns-label:4"},
		},
	} {
		t.Run(tc.name, tc.run)
	}
}

func TestModifySet(t *testing.T) {
	mergeArgs := `
apiVersion: mutations.gatekeeper.sh/v1
kind: ModifySet
metadata: {name: add-args, generation: 1}
spec:
  applyTo: [{groups: [""], versions: [v1], kinds: [Pod]}]
  location: "spec.containers[name: *].args"
  parameters:
    operation: merge
    values: {fromList: [--v=2, --alsologtostderr, --log-dir=/tmp]}
`
	for _, tc := range []mutateCase{
		{
			name:     "merge appends the missing values in order",
			mutators: []string{mergeArgs},
			in:       "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {containers: [{name: a, args: [--log-dir=/tmp, --port=80]}]}}",
			want:     "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {containers: [{name: a, args: [--log-dir=/tmp, --port=80, --v=2, --alsologtostderr]}]}}",
			applied:  []string{"ModifySet//add-args:1"},
		},
		{
			name:     "merge creates a missing list",
			mutators: []string{mergeArgs},
			in:       "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {containers: [{name: a}]}}",
			want:     "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {containers: [{name: a, args: [--v=2, --alsologtostderr, --log-dir=/tmp]}]}}",
			applied:  []string{"ModifySet//add-args:1"},
		},
		{
			name:     "merge with every value there",
			mutators: []string{mergeArgs},
			in:       "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {containers: [{name: a, args: [--alsologtostderr, --log-dir=/tmp, --v=2]}]}}",
		},
		{
			name:     "prune removes every occurrence",
			mutators: []string{removeErrLogging},
			in:       "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {containers: [{name: a, args: [--alsologtostderr, --v=2, --alsologtostderr]}, {name: b, args: [--alsologtostderr]}]}}",
			want:     "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {containers: [{name: a, args: [--v=2]}, {name: b, args: []}]}}",
			applied:  []string{"ModifySet//remove-err-logging:1"},
		},
		{
			name:     "prune of a missing list",
			mutators: []string{removeErrLogging},
			in:       "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {containers: [{name: a}]}}",
		},
		{
			// Gatekeeper creates the parents of a location even when the
			// prune then has nothing to remove.
			name: "prune of a missing list creates its missing parents",
			mutators: []string{`
apiVersion: mutations.gatekeeper.sh/v1
kind: ModifySet
metadata: {name: prune-gates, generation: 1}
spec:
  applyTo: [{groups: [""], versions: [v1], kinds: [Pod]}]
  location: spec.readinessGates
  parameters: {operation: prune, values: {fromList: [{conditionType: x}]}}
`},
			in:      "{apiVersion: v1, kind: Pod, metadata: {name: web}}",
			want:    "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {}}",
			applied: []string{"ModifySet//prune-gates:1"},
		},
		{
			name: "values are compared as JSON",
			mutators: []string{`
apiVersion: mutations.gatekeeper.sh/v1
kind: ModifySet
metadata: {name: gates, generation: 1}
spec:
  applyTo: [{groups: [""], versions: [v1], kinds: [Pod]}]
  location: spec.readinessGates
  parameters: {values: {fromList: [{conditionType: a}, {conditionType: b}]}}
`},
			in:      "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {readinessGates: [{conditionType: b}]}}",
			want:    "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {readinessGates: [{conditionType: b}, {conditionType: a}]}}",
			applied: []string{"ModifySet//gates:1"},
		},
		{
			name:     "not a list",
			mutators: []string{mergeArgs},
			in:       "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {containers: [{name: a, args: --v=1}]}}",
			err:      `for mutator ModifySet//add-args failed for  Pod dev web: location spec.containers\[name: \*\].args: spec.containers\[name: \*\].args is a string, but ModifySet needs a list there$`,
		},
	} {
		t.Run(tc.name, tc.run)
	}
}

func TestAssignImage(t *testing.T) {
	pod := func(images ...string) string {
		var cs []string
		for i, img := range images {
			cs = append(cs, fmt.Sprintf("{name: c%d, image: %q}", i, img))
		}
		return "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {containers: [" + strings.Join(cs, ", ") + "]}}"
	}
	// test/bats/tests/mutations/assign_image.yaml
	domainAndDigest := `
apiVersion: mutations.gatekeeper.sh/v1alpha1
kind: AssignImage
metadata: {name: add-domain-digest, generation: 1}
spec:
  applyTo: [{groups: [""], kinds: [Pod], versions: [v1]}]
  location: "spec.containers[name:*].image"
  parameters:
    assignDomain: "foocorp.org"
    assignTag: "@sha256:abcde67890123456789abc345678901a"
  match: {source: All, scope: Namespaced, kinds: [{apiGroups: ["*"], kinds: [Pod]}]}
`
	pathOnly := strings.NewReplacer("add-domain-digest", "path", `assignDomain: "foocorp.org"`, `assignPath: "team/app"`, `assignTag: "@sha256:abcde67890123456789abc345678901a"`, `assignTag: ":v2"`).Replace(domainAndDigest)
	for _, tc := range []mutateCase{
		{
			name:     "domain",
			mutators: []string{assignRegistry},
			in:       pod("nginx", "nginx:1.27", "docker.io/library/nginx@sha256:0123456789abcdef0123456789abcdef", "localhost:5000/app:v1", "mycompany.registry.io/ok"),
			want:     pod("mycompany.registry.io/nginx", "mycompany.registry.io/nginx:1.27", "mycompany.registry.io/library/nginx@sha256:0123456789abcdef0123456789abcdef", "mycompany.registry.io/app:v1", "mycompany.registry.io/ok"),
			applied:  []string{"AssignImage//assign-container-image-registry:1"},
		},
		{
			name:     "domain and digest",
			mutators: []string{domainAndDigest},
			in:       pod("nginx:latest", "quay.io:443/org/tool"),
			want:     pod("foocorp.org/nginx@sha256:abcde67890123456789abc345678901a", "foocorp.org/org/tool@sha256:abcde67890123456789abc345678901a"),
			applied:  []string{"AssignImage//add-domain-digest:1"},
		},
		{
			name:     "path and tag keep the domain",
			mutators: []string{pathOnly},
			in:       pod("registry.local/old/app:v1", "busybox"),
			want:     pod("registry.local/team/app:v2", "team/app:v2"),
			applied:  []string{"AssignImage//path:1"},
		},
		{
			name:     "a missing image is built from the parts",
			mutators: []string{pathOnly},
			in:       "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {containers: [{name: a}]}}",
			want:     "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {containers: [{name: a, image: 'team/app:v2'}]}}",
			applied:  []string{"AssignImage//path:1"},
		},
		{
			name:     "not a string",
			mutators: []string{assignRegistry},
			in:       "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {containers: [{name: a, image: {name: nginx}}]}}",
			err:      `location spec.containers\[name: \*\].image: spec.containers\[name: \*\].image is an object, but AssignImage needs a string there$`,
		},
	} {
		t.Run(tc.name, tc.run)
	}
}

func TestOrderAndConvergence(t *testing.T) {
	setX := func(name, value string) string {
		return assignYAML(name, "spec.priorityClassName", "assign: {value: "+value+"}")
	}
	for _, tc := range []mutateCase{
		{
			// Both run on every pass, a before b; the second pass leaves
			// the object as the first did, which is convergence.
			name:     "by name: the last one wins",
			mutators: []string{setX("b", "high"), setX("a", "low")},
			in:       "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {}}",
			want:     "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {priorityClassName: high}}",
			applied:  []string{"Assign//a:1", "Assign//b:1"},
		},
		{
			name:     "by kind: Assign before ModifySet",
			mutators: []string{removeErrLogging, assignYAML("z-args", "spec.containers[name: main].args", "assign: {value: [--alsologtostderr, --v=2]}")},
			in:       "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {containers: [{name: main}]}}",
			want:     "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {containers: [{name: main, args: [--v=2]}]}}",
			applied:  []string{"Assign//z-args:1", "ModifySet//remove-err-logging:1"},
		},
		{
			// The Assign runs first and does not match; the label the
			// AssignMetadata adds makes it match on the second pass.
			name: "a later pass matches what an earlier one added",
			mutators: []string{
				strings.NewReplacer("demo-annotation-owner", "team", "owner", "team", `"admin"`, "web").Replace(ownerLabel),
				withMatch(setX("priority", "high"), "{labelSelector: {matchLabels: {team: web}}}"),
			},
			in:      "{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {}}",
			want:    "{apiVersion: v1, kind: Pod, metadata: {name: web, labels: {team: web}}, spec: {priorityClassName: high}}",
			applied: []string{"Assign//priority:1", "AssignMetadata//team:1"},
		},
		{
			name:     "only the mutators that changed something are named",
			mutators: []string{ownerLabel, pullPolicyAlways},
			in:       strings.Replace(testPod, "namespace: dev}", "namespace: dev, labels: {owner: bob}}", 1),
			want: `
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: dev, labels: {owner: bob}}
spec:
  containers:
  - {name: main, image: nginx, imagePullPolicy: Always}
  - {name: log, image: busybox, imagePullPolicy: Always}
`,
			applied: []string{"Assign//demo-image-pull-policy:1"},
		},
	} {
		t.Run(tc.name, tc.run)
	}
}

// TestNotConverging: a mutator that creates element [name: a] and another
// that renames every element grow the list on every pass. Gatekeeper's
// schema rule holds such a pair back (two key fields on one list); with the
// rule bypassed, Mutate gives up after one pass more than there are
// mutators, with Gatekeeper's message, and leaves the object alone.
func TestNotConverging(t *testing.T) {
	create := assignYAML("a-create", "spec.containers[name: a].image", "assign: {value: busybox}")
	rename := assignYAML("b-rename", "spec.containers[image: *].name", "assign: {value: b}")
	s := NewSystem()
	if err := s.Upsert(mustParse(t, create)); err != nil {
		t.Fatal(err)
	}
	err := s.Upsert(mustParse(t, rename))
	if !errors.Is(err, ErrConflictingSchema) {
		t.Fatalf("Upsert = %v, want ErrConflictingSchema", err)
	}
	want := "mutators have conflicting schemas: Assign//b-rename conflicts with Assign//a-create on the shape of the objects they mutate; they are not applied until that changes"
	if err.Error() != want {
		t.Errorf("Upsert error\n got: %s\nwant: %s", err, want)
	}
	in := "{apiVersion: v1, kind: Pod, metadata: {generateName: web-}, spec: {containers: []}}"
	obj := fromYAML(t, in)
	if changed, applied, err := s.Mutate(createIn(podGVK, "dev"), obj); err != nil || changed || applied != nil {
		t.Fatalf("Mutate with the conflicting pair = %v, %v, %v; want nothing applied", changed, applied, err)
	}

	s.mu.Lock()
	s.conflicts = map[string][]string{}
	s.mu.Unlock()
	_, _, err = s.Mutate(createIn(podGVK, "dev"), obj)
	if !errors.Is(err, ErrNotConverging) {
		t.Fatalf("Mutate = %v, want ErrNotConverging", err)
	}
	if re := `^mutation not converging: mutation [0-9a-f-]{36} not converging for  Pod dev web-$`; !regexp.MustCompile(re).MatchString(err.Error()) {
		t.Errorf("error %q does not match %s", err, re)
	}
	if diff := cmp.Diff(fromYAML(t, in).Object, obj.Object); diff != "" {
		t.Errorf("object changed (-want +got):\n%s", diff)
	}
}

func TestSchemaConflicts(t *testing.T) {
	image := `
apiVersion: mutations.gatekeeper.sh/v1alpha1
kind: AssignImage
metadata: {name: img}
spec:
  applyTo: [{groups: [""], versions: [v1], kinds: [Pod]}]
  location: "spec.containers[name: *].image"
  parameters: {assignTag: ":v1"}
`
	for _, tc := range []struct {
		name     string
		mutators []string
		// conflicts maps the IDs held back to the IDs they conflict with.
		conflicts map[string][]string
	}{
		{"object and list", []string{
			assignYAML("a", "spec.containers[name: x].image", "assign: {value: i}"),
			assignYAML("b", "spec.containers.image", "assign: {value: i}"),
		}, map[string][]string{"Assign//a": {"Assign//b"}, "Assign//b": {"Assign//a"}}},
		{"same key field", []string{
			assignYAML("a", "spec.containers[name: x].image", "assign: {value: i}"),
			assignYAML("b", "spec.containers[name: *].image", "assign: {value: i}"),
			image,
		}, nil},
		{"unknown terminal type conflicts with nothing", []string{
			assignYAML("a", "spec.containers[name: x].securityContext", "assign: {value: {}}"),
			assignYAML("b", "spec.containers[name: x].securityContext.privileged", "assign: {value: false}"),
		}, nil},
		{"a ModifySet's set against an object", []string{
			assignYAML("a", "spec.containers[name: x].args.first", "assign: {value: x}"),
			strings.Replace(removeErrLogging, "remove-err-logging", "m", 1),
		}, map[string][]string{"Assign//a": {"ModifySet//m"}, "ModifySet//m": {"Assign//a"}}},
		{"AssignImage must end its path", []string{
			image,
			assignYAML("deeper", "spec.containers[name: *].image.name", "assign: {value: x}"),
		}, map[string][]string{"Assign//deeper": {"AssignImage//img"}, "AssignImage//img": {"Assign//deeper"}}},
		{"different kinds", []string{
			assignYAML("a", "spec.containers[name: x].image", "assign: {value: i}"),
			strings.Replace(assignYAML("b", "spec.containers.image", "assign: {value: i}"), "kinds: [Pod]", "kinds: [Other]", 1),
		}, nil},
		{"different operations", []string{
			strings.Replace(assignYAML("a", "spec.containers[name: x].image", "assign: {value: i}"), "kinds: [Pod]", "kinds: [Pod], operations: [CREATE]", 1),
			strings.Replace(assignYAML("b", "spec.containers.image", "assign: {value: i}"), "kinds: [Pod]", "kinds: [Pod], operations: [UPDATE]", 1),
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSystem()
			for _, m := range tc.mutators {
				_ = s.Upsert(mustParse(t, m))
			}
			got := map[string][]string{}
			for _, m := range s.order {
				if c := s.Conflicts(m.kind, m.name); c != nil {
					got[m.ID()] = c
				}
			}
			if diff := cmp.Diff(tc.conflicts, got, cmp.Comparer(func(a, b map[string][]string) bool { return len(a) == 0 && len(b) == 0 || cmp.Equal(a, b) })); diff != "" {
				t.Errorf("conflicts (-want +got):\n%s", diff)
			}
		})
	}

	// A conflict is resolved when one side goes; the other then applies.
	s := newSystem(t, assignYAML("a", "spec.containers[name: main].image", "assign: {value: nginx}"))
	if err := s.Upsert(mustParse(t, assignYAML("b", "spec.containers.image", "assign: {value: i}"))); !errors.Is(err, ErrConflictingSchema) {
		t.Fatalf("Upsert = %v, want a conflict", err)
	}
	s.Remove(KindAssign, "b")
	if c := s.Conflicts(KindAssign, "a"); c != nil {
		t.Errorf("Conflicts after Remove = %v", c)
	}
	obj := fromYAML(t, "{apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: main, image: busybox}]}}")
	if _, applied, err := s.Mutate(createIn(podGVK, "dev"), obj); err != nil || len(applied) != 1 {
		t.Errorf("Mutate after Remove = %v, %v", applied, err)
	}
}

func TestMatch(t *testing.T) {
	label := func(match string) string {
		return withMatch(strings.Replace(ownerLabel, "  match:\n    scope: Namespaced\n", "", 1), match)
	}
	labelled := "{apiVersion: v1, kind: Pod, metadata: {name: web, labels: {owner: admin}}}"
	in := "{apiVersion: v1, kind: Pod, metadata: {name: web, labels: {app: web}}}"
	out := "{apiVersion: v1, kind: Pod, metadata: {name: web, labels: {app: web, owner: admin}}}"
	applied := []string{"AssignMetadata//demo-annotation-owner:1"}
	for _, tc := range []mutateCase{
		{name: "namespaces: in", mutators: []string{label("{namespaces: [dev, qa]}")}, in: in, want: out, applied: applied},
		{name: "namespaces: glob", mutators: []string{label("{namespaces: ['d*']}")}, in: in, want: out, applied: applied},
		{name: "namespaces: out", mutators: []string{label("{namespaces: [prod]}")}, in: in},
		{name: "excludedNamespaces", mutators: []string{label("{excludedNamespaces: ['*ev']}")}, in: in},
		{name: "kinds: in", mutators: []string{label(`{kinds: [{apiGroups: [""], kinds: [Pod]}]}`)}, in: in, want: out, applied: applied},
		{name: "kinds: out", mutators: []string{label(`{kinds: [{apiGroups: [apps], kinds: [Deployment]}]}`)}, in: in},
		{name: "labelSelector: in", mutators: []string{label("{labelSelector: {matchLabels: {app: web}}}")}, in: in, want: out, applied: applied},
		{name: "labelSelector: out", mutators: []string{label("{labelSelector: {matchExpressions: [{key: app, operator: NotIn, values: [web]}]}}")}, in: in},
		{name: "namespaceSelector: in", mutators: []string{label("{namespaceSelector: {matchLabels: {env: prod}}}")}, req: createIn(podGVK, "dev", "env", "prod"), in: in, want: out, applied: applied},
		{name: "namespaceSelector: out", mutators: []string{label("{namespaceSelector: {matchLabels: {env: prod}}}")}, req: createIn(podGVK, "dev", "env", "test"), in: in},
		{name: "namespaceSelector: unknown namespace", mutators: []string{label("{namespaceSelector: {matchLabels: {env: prod}}}")},
			req: &Request{Operation: admission.Create, GVK: podGVK, Namespace: "dev"}, in: in,
			err: `^matching for mutator AssignMetadata//demo-annotation-owner failed for  Pod dev web: namespaceSelector: namespace "dev" of the namespaced object is unknown$`},
		{name: "namespaceSelector: a Namespace is its own", mutators: []string{label("{namespaceSelector: {matchLabels: {env: prod}}}")},
			req: &Request{Operation: admission.Create, GVK: namespaceGVK}, in: "{apiVersion: v1, kind: Namespace, metadata: {name: p, labels: {env: prod}}}",
			want: "{apiVersion: v1, kind: Namespace, metadata: {name: p, labels: {env: prod, owner: admin}}}", applied: applied},
		{name: "name", mutators: []string{label("{name: 'web*'}")}, in: in, want: out, applied: applied},
		{name: "name: generateName", mutators: []string{label("{name: 'web-*'}")},
			in:   "{apiVersion: v1, kind: Pod, metadata: {generateName: web-}}",
			want: "{apiVersion: v1, kind: Pod, metadata: {generateName: web-, labels: {owner: admin}}}", applied: applied},
		{name: "name: out", mutators: []string{label("{name: api}")}, in: in},
		{name: "scope Cluster", mutators: []string{label("{scope: Cluster}")}, in: in},
		{name: "source Generated", mutators: []string{label("{source: Generated}")}, in: in},
		{name: "source Original", mutators: []string{label("{source: Original}")}, in: in, want: out, applied: applied},
		{name: "the label it adds no longer matters", mutators: []string{label("{labelSelector: {matchExpressions: [{key: owner, operator: DoesNotExist}]}}")}, in: in, want: out, applied: applied},
		{name: "already labelled", mutators: []string{label("{}")}, in: labelled},
	} {
		t.Run(tc.name, tc.run)
	}
}

func TestOperations(t *testing.T) {
	withOps := func(ops string) string {
		return strings.Replace(pullPolicyAlways, `versions: ["v1"]`, `versions: ["v1"]`+"\n    operations: "+ops, 1)
	}
	mutated := strings.ReplaceAll(strings.Replace(testPod, "image: nginx}", "image: nginx, imagePullPolicy: Always}", 1), "IfNotPresent", "Always")
	applied := []string{"Assign//demo-image-pull-policy:1"}
	req := func(op admission.Operation) *Request {
		r := createIn(podGVK, "dev")
		r.Operation = op
		return r
	}
	for _, tc := range []mutateCase{
		{name: "UPDATE", mutators: []string{pullPolicyAlways}, req: req(admission.Update), in: testPod, want: mutated, applied: applied},
		{name: "DELETE is never mutated", mutators: []string{pullPolicyAlways}, req: req(admission.Delete), in: testPod},
		{name: "CONNECT is never mutated", mutators: []string{pullPolicyAlways}, req: req(admission.Connect), in: testPod},
		{name: "CREATE only, on CREATE", mutators: []string{withOps("[CREATE]")}, in: testPod, want: mutated, applied: applied},
		{name: "CREATE only, on UPDATE", mutators: []string{withOps("[CREATE]")}, req: req(admission.Update), in: testPod},
		{name: "*, on UPDATE", mutators: []string{withOps(`["*"]`)}, req: req(admission.Update), in: testPod, want: mutated, applied: applied},
		{name: "no operation: all operations", mutators: []string{pullPolicyAlways}, req: req(""), in: testPod, want: mutated, applied: applied},
		{name: "no operation: CREATE and UPDATE", mutators: []string{withOps("[UPDATE, CREATE]")}, req: req(""), in: testPod, want: mutated, applied: applied},
		{name: "no operation: CREATE only", mutators: []string{withOps("[CREATE]")}, req: req(""), in: testPod},
		{name: "subresources are never mutated", mutators: []string{pullPolicyAlways}, req: &Request{Operation: admission.Update, GVK: podGVK, Namespace: "dev", NamespaceObject: nsObject("dev"), SubResource: "status"}, in: testPod},
		{name: "another version", mutators: []string{pullPolicyAlways}, req: createIn(schema.GroupVersionKind{Version: "v2", Kind: "Pod"}, "dev"), in: testPod},
		{name: "Gatekeeper's own resources are never mutated", mutators: []string{strings.Replace(ownerLabel, "  match:\n    scope: Namespaced\n", "", 1)},
			req: &Request{Operation: admission.Create, GVK: schema.GroupVersionKind{Group: "constraints.gatekeeper.sh", Version: "v1beta1", Kind: "K8sRequiredLabels"}},
			in:  "{apiVersion: constraints.gatekeeper.sh/v1beta1, kind: K8sRequiredLabels, metadata: {name: c}}"},
	} {
		t.Run(tc.name, tc.run)
	}
}

func TestSystemUpsertRemove(t *testing.T) {
	s := newSystem(t, ownerLabel)
	update := strings.NewReplacer(`"admin"`, "ops", "generation: 1", "generation: 2").Replace(ownerLabel)
	if err := s.Upsert(mustParse(t, update)); err != nil {
		t.Fatal(err)
	}
	obj := fromYAML(t, "{apiVersion: v1, kind: Pod, metadata: {name: p}}")
	_, applied, err := s.Mutate(createIn(podGVK, "dev"), obj)
	if err != nil || obj.GetLabels()["owner"] != "ops" || !cmp.Equal(applied, []string{"AssignMetadata//demo-annotation-owner:2"}) {
		t.Fatalf("after replacing: labels %v, applied %v, err %v", obj.GetLabels(), applied, err)
	}
	s.Remove(KindAssignMetadata, "demo-annotation-owner")
	s.Remove(KindAssignMetadata, "not-there")
	obj = fromYAML(t, "{apiVersion: v1, kind: Pod, metadata: {name: p}}")
	if changed, _, err := s.Mutate(createIn(podGVK, "dev"), obj); changed || err != nil {
		t.Fatalf("after Remove: changed %v, err %v", changed, err)
	}
}

// TestConcurrent mutates from several goroutines while mutators change.
func TestConcurrent(t *testing.T) {
	s := newSystem(t, pullPolicyAlways, ownerLabel, allowPrivilegeEscalation)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				obj := fromYAML(t, testPod)
				if _, _, err := s.Mutate(createIn(podGVK, "dev"), obj); err != nil {
					t.Error(err)
					return
				}
				if obj.GetLabels()["owner"] == "" {
					t.Error("no owner label")
					return
				}
			}
		}()
	}
	for i := 0; i < 50; i++ {
		m := mustParse(t, sidecar)
		if err := s.Upsert(m); err != nil {
			t.Fatal(err)
		}
		s.Remove(m.Kind(), m.Name())
	}
	wg.Wait()
}

// BenchmarkMutate is one Pod CREATE through four mutators that change it
// (two passes: one that mutates, one that finds nothing left to do).
func BenchmarkMutate(b *testing.B) {
	s := newSystem(b, pullPolicyAlways, ownerLabel, allowPrivilegeEscalation, assignRegistry)
	pod := fromYAML(b, testPod)
	req := createIn(podGVK, "dev")
	b.ReportAllocs()
	for b.Loop() {
		obj := pod.DeepCopy()
		if _, applied, err := s.Mutate(req, obj); err != nil || len(applied) != 4 {
			b.Fatal(applied, err)
		}
	}
}

// BenchmarkMutateNoMutator is a request no mutator applies to.
func BenchmarkMutateNoMutator(b *testing.B) {
	s := newSystem(b, pullPolicyAlways, allowPrivilegeEscalation, assignRegistry)
	cm := fromYAML(b, "{apiVersion: v1, kind: ConfigMap, metadata: {name: c}, data: {a: b}}")
	req := createIn(schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, "dev")
	b.ReportAllocs()
	for b.Loop() {
		if changed, _, err := s.Mutate(req, cm); err != nil || changed {
			b.Fatal(changed, err)
		}
	}
}
