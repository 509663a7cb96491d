package constraint

import (
	"fmt"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ConstraintValidator checks constraints of one template against the
// schema of its constraint CRD, with the validator the API server runs on
// custom resources, for tools that load constraints without an API server
// (gatehouse test, as gator does with the template's schema).
type ConstraintValidator struct {
	kind      string
	validator validation.SchemaValidator
}

// NewConstraintValidator builds the validator of t's constraints.
func NewConstraintValidator(t *Template) (*ConstraintValidator, error) {
	crd, err := ConstraintCRD(t)
	if err != nil {
		return nil, err
	}
	var v1schema *apiextensionsv1.JSONSchemaProps
	for _, v := range crd.Spec.Versions {
		if v.Name == ConstraintsVersion && v.Schema != nil {
			v1schema = v.Schema.OpenAPIV3Schema
		}
	}
	if v1schema == nil {
		return nil, fmt.Errorf("template %s: its constraint CRD has no %s schema", t.Name, ConstraintsVersion)
	}
	internal := &apiextensions.JSONSchemaProps{}
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v1schema, internal, nil); err != nil {
		return nil, fmt.Errorf("template %s: schema: %w", t.Name, err)
	}
	validator, _, err := validation.NewSchemaValidator(internal)
	if err != nil {
		return nil, fmt.Errorf("template %s: schema: %w", t.Name, err)
	}
	return &ConstraintValidator{kind: t.Kind, validator: validator}, nil
}

// Validate checks u: its kind, its schema and what ParseConstraint
// checks. Errors name the field, as the API server's do.
func (v *ConstraintValidator) Validate(u *unstructured.Unstructured) (*Constraint, error) {
	if u.GetKind() != v.kind {
		return nil, fmt.Errorf("kind %s: the template defines kind %s", u.GetKind(), v.kind)
	}
	if gv := u.GroupVersionKind().GroupVersion(); gv.Group != ConstraintsGroup {
		return nil, fmt.Errorf("apiVersion %s: constraints are in group %s", gv, ConstraintsGroup)
	}
	if errs := validation.ValidateCustomResource(field.NewPath(""), u.UnstructuredContent(), v.validator); len(errs) > 0 {
		return nil, &SchemaError{Errs: errs}
	}
	return ParseConstraint(u)
}

// SchemaError is a constraint that its template's schema refuses.
type SchemaError struct{ Errs field.ErrorList }

func (e *SchemaError) Error() string { return e.Errs.ToAggregate().Error() }
