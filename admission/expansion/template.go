package expansion

import (
	"fmt"
	"slices"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gatehouse-dev/gatehouse/admission/constraint"
)

// Group is the API group of ExpansionTemplates.
const Group = "expansion.gatekeeper.sh"

// Kind is the ExpansionTemplate kind.
const Kind = "ExpansionTemplate"

// GVR is the ExpansionTemplate resource in its stored version.
var GVR = schema.GroupVersionResource{Group: Group, Version: "v1beta1", Resource: "expansiontemplates"}

// servedVersions are the versions Gatekeeper serves, the stored one first.
var servedVersions = []string{"v1beta1", "v1alpha1"}

// Template is one ExpansionTemplate as the System uses it.
type Template struct {
	Name string
	// ApplyTo selects the workloads it expands, by group, version and kind.
	ApplyTo []ApplyTo
	// Source is the dotted path of the field the resultant is made from
	// (spec.template for most pod-creating workloads).
	Source string
	// Generated is the resultant's group, version and kind.
	Generated schema.GroupVersionKind
	// EnforcementAction, when set, replaces the actions of the constraints
	// that the resultant violates.
	EnforcementAction string
	uid               string
	generation        int64
}

// ApplyTo is one spec.applyTo entry: exact groups, versions and kinds.
type ApplyTo struct {
	Groups   []string `json:"groups,omitempty"`
	Kinds    []string `json:"kinds,omitempty"`
	Versions []string `json:"versions,omitempty"`
}

// Matches reports whether gvk is one the entry names.
func (a ApplyTo) Matches(gvk schema.GroupVersionKind) bool {
	return slices.Contains(a.Groups, gvk.Group) && slices.Contains(a.Versions, gvk.Version) && slices.Contains(a.Kinds, gvk.Kind)
}

type templateSpec struct {
	ApplyTo           []ApplyTo `json:"applyTo,omitempty"`
	TemplateSource    string    `json:"templateSource,omitempty"`
	GeneratedGVK      gvk       `json:"generatedGVK,omitempty"`
	EnforcementAction string    `json:"enforcementAction,omitempty"`
}

type gvk struct {
	Group   string `json:"group,omitempty"`
	Version string `json:"version,omitempty"`
	Kind    string `json:"kind,omitempty"`
}

// enforcementActions are the overrides a template may set: those of a
// constraint, less scoped (which names enforcement points a template has
// none of).
var enforcementActions = []string{"deny", "warn", "dryrun"}

// Parse reads an ExpansionTemplate. Its errors name the field at fault.
func Parse(u *unstructured.Unstructured) (*Template, error) {
	if u.GetName() == "" {
		return nil, fmt.Errorf("metadata.name: Required value: ExpansionTemplate has empty name field")
	}
	rawSpec, _, err := unstructured.NestedMap(u.Object, "spec")
	if err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	var spec templateSpec
	// Strict, so that a misspelled field is an error instead of a template
	// that expands less than its author meant.
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(rawSpec, &spec, true); err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	t := &Template{Name: u.GetName(), ApplyTo: spec.ApplyTo, Source: spec.TemplateSource,
		Generated:         schema.GroupVersionKind{Group: spec.GeneratedGVK.Group, Version: spec.GeneratedGVK.Version, Kind: spec.GeneratedGVK.Kind},
		EnforcementAction: spec.EnforcementAction, uid: string(u.GetUID()), generation: u.GetGeneration()}
	switch {
	case t.Source == "":
		return nil, fmt.Errorf("spec.templateSource: Required value: ExpansionTemplate %s has empty source field", t.Name)
	case strings.HasPrefix(t.Source, ".") || strings.HasSuffix(t.Source, ".") || strings.Contains(t.Source, ".."):
		return nil, fmt.Errorf("spec.templateSource: Invalid value %q: a dotted path of field names such as spec.template", t.Source)
	case t.Generated == (schema.GroupVersionKind{}):
		return nil, fmt.Errorf("spec.generatedGVK: Required value: ExpansionTemplate %s has empty generatedGVK field", t.Name)
	case t.Generated.Kind == "" || t.Generated.Version == "":
		return nil, fmt.Errorf("spec.generatedGVK: Invalid value: kind and version are required (group is \"\" for the core group)")
	case len(t.ApplyTo) == 0:
		return nil, fmt.Errorf("spec.applyTo: Required value: the workloads to expand")
	case t.EnforcementAction != "" && !slices.Contains(enforcementActions, t.EnforcementAction):
		return nil, fmt.Errorf("spec.enforcementAction: Unsupported value %q: supported values: %s", t.EnforcementAction, strings.Join(enforcementActions, ", "))
	}
	for i, a := range t.ApplyTo {
		if len(a.Groups) == 0 || len(a.Versions) == 0 || len(a.Kinds) == 0 {
			return nil, fmt.Errorf("spec.applyTo[%d]: groups, versions and kinds are all required", i)
		}
		if slices.Contains(a.Kinds, t.Generated.Kind) && slices.Contains(a.Groups, t.Generated.Group) && slices.Contains(a.Versions, t.Generated.Version) {
			return nil, fmt.Errorf("spec.applyTo[%d]: %s expands into itself", i, t.Generated.Kind)
		}
	}
	return t, nil
}

// CRD is the ExpansionTemplate CRD as Gatekeeper installs it:
// cluster-scoped, v1beta1 stored and v1alpha1 served with the same schema.
func CRD() *apiextensionsv1.CustomResourceDefinition {
	str := apiextensionsv1.JSONSchemaProps{Type: "string"}
	strs := apiextensionsv1.JSONSchemaProps{Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &str}}
	spec := apiextensionsv1.JSONSchemaProps{Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
		"applyTo": {Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &apiextensionsv1.JSONSchemaProps{
			Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{"groups": strs, "kinds": strs, "versions": strs},
		}}},
		"templateSource":    str,
		"enforcementAction": str,
		"generatedGVK": {Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"group": str, "version": str, "kind": str,
		}},
	}}
	return constraint.ClusterCRD(Group, Kind, GVR.Resource, "expansiontemplate", servedVersions, spec, nil)
}
