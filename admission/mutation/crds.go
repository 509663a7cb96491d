package mutation

import (
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CRDs are the CRDs of the four mutator kinds as Gatekeeper installs them:
// cluster-scoped, in mutations.gatekeeper.sh, with Gatekeeper's schema
// (spec.parameters.assign.value and ModifySet's values are free-form), so
// that the API server prunes and rejects what Gatekeeper's would. Assign,
// AssignMetadata and ModifySet serve v1 (stored), v1alpha1 and v1beta1;
// AssignImage serves v1alpha1.
func CRDs() []*apiextensionsv1.CustomResourceDefinition {
	params := func(p map[string]apiextensionsv1.JSONSchemaProps) apiextensionsv1.JSONSchemaProps {
		return apiextensionsv1.JSONSchemaProps{Type: "object", Properties: p}
	}
	str := apiextensionsv1.JSONSchemaProps{Type: "string"}
	common := func(applyTo bool, parameters apiextensionsv1.JSONSchemaProps) apiextensionsv1.JSONSchemaProps {
		spec := map[string]apiextensionsv1.JSONSchemaProps{
			"location":   str,
			"match":      matchSchema(),
			"parameters": parameters,
		}
		if applyTo {
			spec["applyTo"] = applyToSchema()
		}
		return apiextensionsv1.JSONSchemaProps{Type: "object", Properties: spec}
	}
	return []*apiextensionsv1.CustomResourceDefinition{
		mutatorCRD(KindAssign, common(true, params(map[string]apiextensionsv1.JSONSchemaProps{
			"assign":    assignFieldSchema(),
			"pathTests": pathTestsSchema(),
		}))),
		mutatorCRD(KindAssignImage, common(true, params(map[string]apiextensionsv1.JSONSchemaProps{
			"assignDomain": str,
			"assignPath":   str,
			"assignTag":    str,
			"pathTests":    pathTestsSchema(),
		}))),
		mutatorCRD(KindAssignMetadata, common(false, params(map[string]apiextensionsv1.JSONSchemaProps{
			"assign": assignFieldSchema(),
		}))),
		mutatorCRD(KindModifySet, common(true, params(map[string]apiextensionsv1.JSONSchemaProps{
			"operation": {Type: "string", Enum: enum(OpMerge, OpPrune), Default: &apiextensionsv1.JSON{Raw: []byte(`"merge"`)}},
			"pathTests": pathTestsSchema(),
			"values":    {Type: "object", XPreserveUnknownFields: ptrTrue()},
		}))),
	}
}

// mutatorCRD is the CRD of one kind, whose plural and singular are its
// lower-cased kind (assign, assignmetadata, …), as in Gatekeeper.
func mutatorCRD(kind string, spec apiextensionsv1.JSONSchemaProps) *apiextensionsv1.CustomResourceDefinition {
	plural := strings.ToLower(kind)
	var versions []apiextensionsv1.CustomResourceDefinitionVersion
	for i, v := range servedVersions[kind] {
		storage := i == 0
		metadata := apiextensionsv1.JSONSchemaProps{Type: "object"}
		if storage {
			// Gatekeeper's name limit (core.ValidateName); only the stored
			// version's schema carries it.
			maxLen := int64(63)
			metadata.Properties = map[string]apiextensionsv1.JSONSchemaProps{"name": {Type: "string", MaxLength: &maxLen}}
		}
		props := &apiextensionsv1.JSONSchemaProps{Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"apiVersion": {Type: "string"},
			"kind":       {Type: "string"},
			"metadata":   metadata,
			"spec":       *spec.DeepCopy(),
			"status":     {Type: "object", XPreserveUnknownFields: ptrTrue()},
		}}
		versions = append(versions, apiextensionsv1.CustomResourceDefinitionVersion{
			Name: v, Served: true, Storage: storage,
			Schema:       &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: props},
			Subresources: &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}},
		})
	}
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: plural + "." + Group, Labels: map[string]string{"gatekeeper.sh/system": "yes"}},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: Group,
			Names: apiextensionsv1.CustomResourceDefinitionNames{
				Kind: kind, ListKind: kind + "List", Plural: plural, Singular: plural,
			},
			Scope:    apiextensionsv1.ClusterScoped,
			Versions: versions,
		},
	}
}

func ptrTrue() *bool { b := true; return &b }

func enum(values ...string) []apiextensionsv1.JSON {
	out := make([]apiextensionsv1.JSON, len(values))
	for i, v := range values {
		out[i] = apiextensionsv1.JSON{Raw: []byte(`"` + v + `"`)}
	}
	return out
}

func stringsSchema() apiextensionsv1.JSONSchemaProps {
	return apiextensionsv1.JSONSchemaProps{Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &apiextensionsv1.JSONSchemaProps{Type: "string"}}}
}

func applyToSchema() apiextensionsv1.JSONSchemaProps {
	strs := stringsSchema()
	return apiextensionsv1.JSONSchemaProps{Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &apiextensionsv1.JSONSchemaProps{
		Type: "object",
		Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"groups":   strs,
			"kinds":    strs,
			"versions": strs,
			"operations": {Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &apiextensionsv1.JSONSchemaProps{
				Type: "string", Enum: enum("CREATE", "UPDATE", "*"),
			}}},
		},
	}}}
}

func pathTestsSchema() apiextensionsv1.JSONSchemaProps {
	return apiextensionsv1.JSONSchemaProps{Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &apiextensionsv1.JSONSchemaProps{
		Type: "object",
		Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"subPath":   {Type: "string"},
			"condition": {Type: "string", Enum: enum(MustExist, MustNotExist)},
		},
	}}}
}

// assignFieldSchema is spec.parameters.assign, with Gatekeeper's defaults
// for externalData.
func assignFieldSchema() apiextensionsv1.JSONSchemaProps {
	str := apiextensionsv1.JSONSchemaProps{Type: "string"}
	return apiextensionsv1.JSONSchemaProps{Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
		"value": {XPreserveUnknownFields: ptrTrue()},
		"fromMetadata": {Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"field": str,
		}},
		"externalData": {Type: "object", Required: []string{"provider"}, Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"provider":      str,
			"dataSource":    {Type: "string", Enum: enum("ValueAtLocation", "Username"), Default: &apiextensionsv1.JSON{Raw: []byte(`"ValueAtLocation"`)}},
			"failurePolicy": {Type: "string", Enum: enum("UseDefault", "Ignore", "Fail"), Default: &apiextensionsv1.JSON{Raw: []byte(`"Fail"`)}},
			"default":       str,
		}},
	}}
}

// matchSchema is the mutators' spec.match in Gatekeeper's schema, with the
// name-glob pattern on names and namespaces.
func matchSchema() apiextensionsv1.JSONSchemaProps {
	str := apiextensionsv1.JSONSchemaProps{Type: "string"}
	atomic := "atomic"
	glob := apiextensionsv1.JSONSchemaProps{Type: "string", Pattern: matchNamePattern.String()}
	globs := apiextensionsv1.JSONSchemaProps{Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &glob}}
	values := stringsSchema()
	values.XListType = &atomic
	selector := apiextensionsv1.JSONSchemaProps{Type: "object", XMapType: &atomic, Properties: map[string]apiextensionsv1.JSONSchemaProps{
		"matchLabels": {Type: "object", AdditionalProperties: &apiextensionsv1.JSONSchemaPropsOrBool{Schema: &str}},
		"matchExpressions": {Type: "array", XListType: &atomic, Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &apiextensionsv1.JSONSchemaProps{
			Type: "object", Required: []string{"key", "operator"},
			Properties: map[string]apiextensionsv1.JSONSchemaProps{"key": str, "operator": str, "values": values},
		}}},
	}}
	return apiextensionsv1.JSONSchemaProps{Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
		"kinds": {Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &apiextensionsv1.JSONSchemaProps{
			Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{"apiGroups": stringsSchema(), "kinds": stringsSchema()},
		}}},
		"scope":              str,
		"namespaces":         globs,
		"excludedNamespaces": globs,
		"labelSelector":      selector,
		"namespaceSelector":  selector,
		"name":               glob,
		"source":             {Type: "string", Enum: enum("All", "Generated", "Original")},
	}}
}
