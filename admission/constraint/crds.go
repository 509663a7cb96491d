package constraint

import (
	"encoding/json"
	"fmt"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// API groups and versions of Gatekeeper's resources.
const (
	TemplatesGroup   = "templates.gatekeeper.sh"
	ConstraintsGroup = "constraints.gatekeeper.sh"
	// ConstraintsVersion is the version constraints are stored and read in.
	ConstraintsVersion = "v1beta1"
)

// TemplateGVR is the ConstraintTemplate resource in its storage version.
var TemplateGVR = schema.GroupVersionResource{Group: TemplatesGroup, Version: "v1", Resource: "constrainttemplates"}

// ConstraintGVR is the resource of a template's constraints.
func ConstraintGVR(kind string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: ConstraintsGroup, Version: ConstraintsVersion, Resource: strings.ToLower(kind)}
}

func preserveUnknown() *apiextensionsv1.JSONSchemaProps {
	yes := true
	return &apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: &yes}
}

// TemplateCRD is the ConstraintTemplate CRD as Gatekeeper installs it: v1
// stored, v1beta1 and v1alpha1 served with the same schema.
func TemplateCRD() *apiextensionsv1.CustomResourceDefinition {
	str := apiextensionsv1.JSONSchemaProps{Type: "string"}
	target := apiextensionsv1.JSONSchemaProps{
		Type: "object",
		Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"target": str,
			"rego":   str,
			"libs":   {Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &str}},
			"code": {Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &apiextensionsv1.JSONSchemaProps{
				Type:     "object",
				Required: []string{"engine", "source"},
				Properties: map[string]apiextensionsv1.JSONSchemaProps{
					"engine": str,
					"source": *preserveUnknown(),
				},
			}}},
			"operations": {Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &str}},
		},
	}
	spec := apiextensionsv1.JSONSchemaProps{
		Type: "object",
		Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"crd": {Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
				"spec": {Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
					"names": {Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
						"kind":       str,
						"shortNames": {Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &str}},
					}},
					"validation": {Type: "object", XPreserveUnknownFields: ptrTrue(), Properties: map[string]apiextensionsv1.JSONSchemaProps{
						"legacySchema":    {Type: "boolean"},
						"openAPIV3Schema": *preserveUnknown(),
					}},
				}},
			}},
			"targets": {Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &target}},
		},
	}
	schemaProps := objectSchema(spec, true)
	// legacySchema defaults to false in v1 and true in the beta and alpha
	// versions, as in Gatekeeper's CRD: the API server applies the default
	// of the version a template is written in.
	version := func(name string, storage, legacyDefault bool) apiextensionsv1.CustomResourceDefinitionVersion {
		props := schemaProps.DeepCopy()
		validation := props.Properties["spec"].Properties["crd"].Properties["spec"].Properties["validation"]
		legacy := validation.Properties["legacySchema"]
		legacy.Default = &apiextensionsv1.JSON{Raw: []byte(fmt.Sprint(legacyDefault))}
		validation.Properties["legacySchema"] = legacy
		props.Properties["spec"].Properties["crd"].Properties["spec"].Properties["validation"] = validation
		return apiextensionsv1.CustomResourceDefinitionVersion{
			Name: name, Served: true, Storage: storage,
			Schema:       &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: props},
			Subresources: &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}},
		}
	}
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "constrainttemplates." + TemplatesGroup, Labels: map[string]string{"gatekeeper.sh/system": "yes"}},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: TemplatesGroup,
			Names: apiextensionsv1.CustomResourceDefinitionNames{
				Kind: "ConstraintTemplate", ListKind: "ConstraintTemplateList", Plural: "constrainttemplates",
				Singular: "constrainttemplate", ShortNames: []string{"ct"}, Categories: []string{"all-gatekeeper"},
			},
			Scope:    apiextensionsv1.ClusterScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{version("v1", true, false), version("v1beta1", false, true), version("v1alpha1", false, true)},
		},
	}
}

// ConstraintCRD is the CRD of one template's constraints, as Gatekeeper
// generates it: cluster-scoped kind <Kind> in constraints.gatekeeper.sh,
// spec.parameters validated by the template's schema.
func ConstraintCRD(t *Template) (*apiextensionsv1.CustomResourceDefinition, error) {
	params := preserveUnknown()
	if len(t.Schema) > 0 {
		data, err := json.Marshal(t.Schema)
		if err != nil {
			return nil, err
		}
		params = &apiextensionsv1.JSONSchemaProps{}
		if err := json.Unmarshal(data, params); err != nil {
			return nil, fmt.Errorf("spec.crd.spec.validation.openAPIV3Schema: %w", err)
		}
		if params.Type == "" {
			params.Type = "object"
		}
		if t.LegacySchema {
			// Gatekeeper's legacySchema keeps whatever the schema does not
			// describe, as pre-structural CRDs did.
			params.XPreserveUnknownFields = ptrTrue()
		}
	}
	str := apiextensionsv1.JSONSchemaProps{Type: "string"}
	schemaProps := objectSchema(apiextensionsv1.JSONSchemaProps{Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
		"match":                    matchSchema(),
		"enforcementAction":        str,
		"scopedEnforcementActions": {Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: preserveUnknown()}},
		"parameters":               *params,
	}}, true)
	plural := strings.ToLower(t.Kind)
	columns := []apiextensionsv1.CustomResourceColumnDefinition{
		{Name: "enforcement-action", Type: "string", JSONPath: ".spec.enforcementAction"},
		{Name: "total-violations", Type: "integer", JSONPath: ".status.totalViolations"},
	}
	version := func(name string, storage bool) apiextensionsv1.CustomResourceDefinitionVersion {
		return apiextensionsv1.CustomResourceDefinitionVersion{
			Name: name, Served: true, Storage: storage,
			Schema:                   &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: schemaProps.DeepCopy()},
			Subresources:             &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}},
			AdditionalPrinterColumns: columns,
		}
	}
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: plural + "." + ConstraintsGroup, Labels: map[string]string{"gatekeeper.sh/constraint": "yes"}},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: ConstraintsGroup,
			Names: apiextensionsv1.CustomResourceDefinitionNames{
				Kind: t.Kind, ListKind: t.Kind + "List", Plural: plural, Singular: plural,
				ShortNames: t.ShortNames, Categories: []string{"constraint", "constraints"},
			},
			Scope:    apiextensionsv1.ClusterScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{version(ConstraintsVersion, true), version("v1alpha1", false), version("v1", false)},
		},
	}, nil
}

func ptrTrue() *bool { b := true; return &b }

// matchSchema is spec.match as Gatekeeper's constraint CRDs describe it,
// so that the API server rejects a misspelled field (with kubectl's strict
// field validation) instead of storing a constraint that matches more than
// its author meant.
func matchSchema() apiextensionsv1.JSONSchemaProps {
	str := apiextensionsv1.JSONSchemaProps{Type: "string"}
	strs := apiextensionsv1.JSONSchemaProps{Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &str}}
	selector := apiextensionsv1.JSONSchemaProps{Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
		"matchLabels": {Type: "object", AdditionalProperties: &apiextensionsv1.JSONSchemaPropsOrBool{Schema: &str}},
		"matchExpressions": {Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &apiextensionsv1.JSONSchemaProps{
			Type: "object", Required: []string{"key", "operator"},
			Properties: map[string]apiextensionsv1.JSONSchemaProps{"key": str, "operator": str, "values": strs},
		}}},
	}}
	return apiextensionsv1.JSONSchemaProps{Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
		"kinds": {Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &apiextensionsv1.JSONSchemaProps{
			Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{"apiGroups": strs, "kinds": strs},
		}}},
		"scope":              {Type: "string", Enum: []apiextensionsv1.JSON{{Raw: []byte(`"*"`)}, {Raw: []byte(`"Cluster"`)}, {Raw: []byte(`"Namespaced"`)}}},
		"namespaces":         strs,
		"excludedNamespaces": strs,
		"labelSelector":      selector,
		"namespaceSelector":  selector,
		"name":               str,
		"source":             {Type: "string", Enum: []apiextensionsv1.JSON{{Raw: []byte(`"All"`)}, {Raw: []byte(`"Generated"`)}, {Raw: []byte(`"Original"`)}}},
	}}
}

// objectSchema is the schema of a custom resource whose spec is spec, with
// a free-form status when withStatus is set.
func objectSchema(spec apiextensionsv1.JSONSchemaProps, withStatus bool) *apiextensionsv1.JSONSchemaProps {
	str := apiextensionsv1.JSONSchemaProps{Type: "string"}
	props := map[string]apiextensionsv1.JSONSchemaProps{
		"apiVersion": str, "kind": str, "metadata": {Type: "object"},
		"spec": spec,
	}
	if withStatus {
		props["status"] = *preserveUnknown()
	}
	return &apiextensionsv1.JSONSchemaProps{Type: "object", Properties: props}
}

// singleVersionCRD is a CRD with one served and stored version, as
// Gatekeeper's system CRDs (Config, SyncSet) are.
func singleVersionCRD(gvr schema.GroupVersionResource, kind, singular string, scope apiextensionsv1.ResourceScope, props *apiextensionsv1.JSONSchemaProps) *apiextensionsv1.CustomResourceDefinition {
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: gvr.Resource + "." + gvr.Group, Labels: map[string]string{"gatekeeper.sh/system": "yes"}},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: gvr.Group,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Kind: kind, ListKind: kind + "List", Plural: gvr.Resource, Singular: singular},
			Scope: scope,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: gvr.Version, Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: props},
			}},
		},
	}
}

// ClusterCRD is a cluster-scoped Gatekeeper CRD (ExpansionTemplates,
// Providers) served in versions, the first one stored, each with spec's
// schema, a free-form status and the status subresource. deprecated maps a
// version to its deprecation warning.
func ClusterCRD(group, kind, plural, singular string, versions []string, spec apiextensionsv1.JSONSchemaProps, deprecated map[string]string) *apiextensionsv1.CustomResourceDefinition {
	var served []apiextensionsv1.CustomResourceDefinitionVersion
	for i, v := range versions {
		version := apiextensionsv1.CustomResourceDefinitionVersion{
			Name: v, Served: true, Storage: i == 0,
			Schema:       &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: objectSchema(*spec.DeepCopy(), true)},
			Subresources: &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}},
		}
		if warning, ok := deprecated[v]; ok {
			version.Deprecated, version.DeprecationWarning = true, &warning
		}
		served = append(served, version)
	}
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: plural + "." + group, Labels: map[string]string{"gatekeeper.sh/system": "yes"}},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: group,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Kind: kind, ListKind: kind + "List", Plural: plural, Singular: singular},
			Scope: apiextensionsv1.ClusterScoped, Versions: served,
		},
	}
}
