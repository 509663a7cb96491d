package mutation

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// crdVersion is one served version's schema, as the API server uses it.
type crdVersion struct {
	structural *structuralschema.Structural
	validator  validation.SchemaValidator
}

func crdVersions(t *testing.T) map[string]map[string]crdVersion {
	t.Helper()
	out := map[string]map[string]crdVersion{}
	for _, crd := range CRDs() {
		out[crd.Spec.Names.Kind] = map[string]crdVersion{}
		for _, v := range crd.Spec.Versions {
			internal := &apiextensions.JSONSchemaProps{}
			if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, internal, nil); err != nil {
				t.Fatal(err)
			}
			s, err := structuralschema.NewStructural(internal)
			if err != nil {
				t.Fatal(err)
			}
			validator, _, err := validation.NewSchemaValidator(internal)
			if err != nil {
				t.Fatal(err)
			}
			out[crd.Spec.Names.Kind][v.Name] = crdVersion{s, validator}
		}
	}
	return out
}

func TestCRDsAreValid(t *testing.T) {
	want := map[string][]string{
		"assign.mutations.gatekeeper.sh":         {"v1", "v1alpha1", "v1beta1"},
		"assignimage.mutations.gatekeeper.sh":    {"v1alpha1"},
		"assignmetadata.mutations.gatekeeper.sh": {"v1", "v1alpha1", "v1beta1"},
		"modifyset.mutations.gatekeeper.sh":      {"v1", "v1alpha1", "v1beta1"},
	}
	got := map[string][]string{}
	for _, crd := range CRDs() {
		var versions []string
		for _, v := range crd.Spec.Versions {
			versions = append(versions, v.Name)
		}
		got[crd.Name] = versions
		if crd.Spec.Scope != apiextensionsv1.ClusterScoped || crd.Spec.Names.Plural != strings.ToLower(crd.Spec.Names.Kind) || !crd.Spec.Versions[0].Storage {
			t.Errorf("%s: scope %s, plural %s, first version stored %v", crd.Name, crd.Spec.Scope, crd.Spec.Names.Plural, crd.Spec.Versions[0].Storage)
		}
		v1 := crd.DeepCopy()
		apiextensionsv1.SetObjectDefaults_CustomResourceDefinition(v1)
		internal := &apiextensions.CustomResourceDefinition{}
		if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(v1, internal, nil); err != nil {
			t.Fatal(err)
		}
		if errs := crdvalidation.ValidateCustomResourceDefinition(context.Background(), internal); len(errs) > 0 {
			t.Errorf("%s: %v", crd.Name, errs.ToAggregate())
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CRDs and versions (-want +got):\n%s", diff)
	}
}

// admit does to a manifest what the API server does on create: it prunes
// the fields the schema does not know (returning them: kubectl's strict
// field validation reports them as errors), applies defaults and validates.
func admit(t *testing.T, versions map[string]map[string]crdVersion, manifest string) (obj map[string]any, unknown []string, errs field.ErrorList) {
	t.Helper()
	u := fromYAML(t, manifest)
	gvk := u.GroupVersionKind()
	v, ok := versions[gvk.Kind][gvk.Version]
	if !ok {
		t.Fatalf("no CRD version for %s", gvk)
	}
	obj = u.Object
	unknown = pruning.PruneWithOptions(obj, v.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
	defaulting.Default(obj, v.structural)
	errs = validation.ValidateCustomResource(nil, obj, v.validator)
	return obj, unknown, errs
}

// TestCRDsAdmitGatekeeperExamples: the mutators of Gatekeeper's docs and
// tests and of the gatekeeper-library pass the schema untouched, and parse.
func TestCRDsAdmitGatekeeperExamples(t *testing.T) {
	versions := crdVersions(t)
	examples := []string{pullPolicyAlways, sidecar, privileged, allowPrivilegeEscalation, ownerLabel, removeErrLogging, assignRegistry, `
apiVersion: mutations.gatekeeper.sh/v1beta1
kind: AssignMetadata
metadata:
  name: k8sownerlabel
spec:
  match:
    scope: Namespaced
    kinds:
      - apiGroups: [""]
        kinds: ["ConfigMap"]
    labelSelector:
      matchExpressions:
        - key: mutation/gatekeeper-test
          operator: In
          values:
            - assign-metadata
  location: "metadata.labels.owner"
  parameters:
    assign:
      value: "gatekeeper"
`, `
apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata:
  name: k8sexternalip
spec:
  applyTo:
  - groups: [""]
    kinds: ["Service"]
    versions: ["v1"]
  location: "spec.externalIPs"
  parameters:
    assign:
      value: []
`, `
apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata:
  name: k8spspdefaultseccomp
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
  location: "spec.securityContext.seccompProfile.type"
  parameters:
    pathTests:
    - subPath: "spec.securityContext.seccompProfile.type"
      condition: MustNotExist
    assign:
      value: RuntimeDefault
`, `
apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata:
  name: demo-env-create-only
spec:
  applyTo:
  - groups: [""]
    kinds: ["Pod"]
    versions: ["v1"]
    operations: ["CREATE"]
  match:
    scope: Namespaced
    kinds:
    - apiGroups: ["*"]
      kinds: ["Pod"]
  location: "spec.containers[name:*].env[name:DEPLOYMENT_TIMESTAMP].value"
  parameters:
    assign:
      value: "2024-01-01T00:00:00Z"
`, `
apiVersion: mutations.gatekeeper.sh/v1
kind: ModifySet
metadata:
  name: conflict
spec:
  applyTo:
  - groups: [""]
    kinds: ["Service"]
    versions: ["v1"]
  location: "spec.foo"
  parameters:
    values:
      fromList: ["1", "2", "3"]
`, `
apiVersion: mutations.gatekeeper.sh/v1alpha1
kind: AssignImage
metadata:
  name: add-domain-digest
spec:
  applyTo:
  - groups: [ "" ]
    kinds: [ "Pod" ]
    versions: [ "v1" ]
  location: "spec.containers[name:*].image"
  parameters:
    assignDomain: "foocorp.org"
    assignTag: "@sha256:abcde67890123456789abc345678901a"
  match:
    source: "All"
    scope: Namespaced
    kinds:
    - apiGroups: [ "*" ]
      kinds: [ "Pod" ]
`}
	for _, manifest := range examples {
		u := fromYAML(t, manifest)
		t.Run(u.GetKind()+"/"+u.GetName(), func(t *testing.T) {
			before := u.DeepCopy().Object
			obj, unknown, errs := admit(t, versions, manifest)
			if len(unknown) > 0 || len(errs) > 0 {
				t.Fatalf("unknown fields %v, errors %v", unknown, errs.ToAggregate())
			}
			if u.GetKind() == KindModifySet {
				// The one default of the schema.
				if _, ok := before["spec"].(map[string]any)["parameters"].(map[string]any)["operation"]; !ok {
					before["spec"].(map[string]any)["parameters"].(map[string]any)["operation"] = "merge"
				}
			}
			if diff := cmp.Diff(before, obj); diff != "" {
				t.Errorf("the API server would change it (-before +after):\n%s", diff)
			}
			mustParse(t, manifest)
		})
	}
}

func TestCRDsReject(t *testing.T) {
	versions := crdVersions(t)
	for _, tc := range []struct {
		name, manifest string
		unknown        []string
		errs           string
	}{
		{"assignIf is not in Gatekeeper's schema", assignYAML("a", "spec.x", "assign: {value: 1}\nassignIf: {in: [2]}"), []string{"spec.parameters.assignIf"}, ""},
		{"misspelled pathTests", assignYAML("a", "spec.x", "assign: {value: 1}\npathTest: []"), []string{"spec.parameters.pathTest"}, ""},
		{"applyTo on AssignMetadata", strings.Replace(ownerLabel, "spec:\n", "spec:\n  applyTo: [{groups: [\"\"]}]\n", 1), []string{"spec.applyTo"}, ""},
		{"operation DELETE", strings.Replace(pullPolicyAlways, `versions: ["v1"]`, `versions: ["v1"]`+"\n    operations: [DELETE]", 1), nil,
			`spec.applyTo[0].operations[0]: Unsupported value: "DELETE": supported values: "CREATE", "UPDATE", "*"`},
		{"condition", strings.Replace(privileged, "MustExist", "Exists", 1), nil,
			`spec.parameters.pathTests[0].condition: Unsupported value: "Exists": supported values: "MustExist", "MustNotExist"`},
		{"namespace glob", strings.Replace(pullPolicyAlways, `["system"]`, `["kube-*-x"]`, 1), nil,
			`spec.match.excludedNamespaces[0]: Invalid value: "kube-*-x": spec.match.excludedNamespaces[0] in body should match '^\*?[-:a-z0-9]*\*?$'`},
		{"name too long", strings.Replace(pullPolicyAlways, "name: demo-image-pull-policy", "name: "+strings.Repeat("x", 64), 1), nil,
			"metadata.name: Too long: may not be more than 63 bytes"},
		{"ModifySet operation", strings.Replace(removeErrLogging, "operation: prune", "operation: replace", 1), nil,
			`spec.parameters.operation: Unsupported value: "replace": supported values: "merge", "prune"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, unknown, errs := admit(t, versions, tc.manifest)
			if diff := cmp.Diff(tc.unknown, unknown); diff != "" {
				t.Errorf("unknown fields (-want +got):\n%s", diff)
			}
			got := ""
			if len(errs) > 0 {
				got = errs.ToAggregate().Error()
			}
			if got != tc.errs {
				t.Errorf("errors\n got: %s\nwant: %s", got, tc.errs)
			}
		})
	}
}
