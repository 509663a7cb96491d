package constraint

import (
	"context"
	"errors"
	"fmt"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	celplugin "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/cel/environment"
)

// EngineCEL and EngineRego are the engine names of a template's
// spec.targets[].code entries.
const (
	EngineCEL  = "K8sNativeValidation"
	EngineRego = "Rego"
)

// Gatekeeper's K8sNativeValidation driver (pkg/drivers/k8scel) reserves
// these names: the variables it binds and the prefix of its own.
const (
	celParamsVariable   = "params"
	celObjectVariable   = "anyObject"
	celReservedPrefix   = "gatekeeper_internal_"
	celDefaultFailure   = admissionregistrationv1.Fail
	celMatcherKind      = "validatingadmissionpolicy"
	celMatcherType      = "vap-matcher"
	celPolicyDescriptor = "ConstraintTemplate"
)

// CELSource is the source of a template's K8sNativeValidation code, as
// Gatekeeper's driver reads it (pkg/drivers/k8scel/schema.Source): the
// parts of a ValidatingAdmissionPolicy's spec that a template carries.
type CELSource struct {
	Validations     []CELValidation `json:"validations,omitempty"`
	FailurePolicy   *string         `json:"failurePolicy,omitempty"`
	MatchConditions []CELExpression `json:"matchCondition,omitempty"` // sic: Gatekeeper's field name
	Variables       []CELExpression `json:"variables,omitempty"`
	// GenerateVAP asks Gatekeeper to also write a ValidatingAdmissionPolicy.
	// Gatehouse evaluates the template in-process, so it is accepted and
	// has no further effect.
	GenerateVAP *bool `json:"generateVAP,omitempty"`
}

// CELValidation is one entry of validations.
type CELValidation struct {
	Expression        string `json:"expression,omitempty"`
	Message           string `json:"message,omitempty"`
	MessageExpression string `json:"messageExpression,omitempty"`
}

// CELExpression is a named expression: a match condition or a variable.
type CELExpression struct {
	Name       string `json:"name"`
	Expression string `json:"expression"`
}

// parseCELSource decodes a code entry's source strictly, so a misspelled
// field is reported instead of a template that checks nothing.
func parseCELSource(source map[string]any) (*CELSource, error) {
	src := &CELSource{}
	if err := fromUnstructured(source, src); err != nil {
		return nil, err
	}
	return src, nil
}

// compileCEL builds the validator for a K8sNativeValidation template
// exactly as Gatekeeper's driver does (Driver.AddTemplate): upstream's
// ValidatingAdmissionPolicy validator, with the variables anyObject (the
// object, or oldObject on DELETE) and params (the constraint's
// spec.parameters, null when absent) ahead of the template's own; only
// those variables see the constraint, bound as the policy's params.
//
// Unlike Gatekeeper, which cannot see compilation errors (they surface as
// a failing evaluation for every request), every expression is compiled
// first, so a template that does not compile is reported with the field at
// fault and never installed. field is the path of the code entry's source.
func compileCEL(src *CELSource, field string) (validating.Validator, error) {
	var errs []error
	for i, v := range src.Variables {
		switch {
		case strings.HasPrefix(v.Name, celReservedPrefix):
			errs = append(errs, fmt.Errorf("%s.variables[%d].name: %q: the prefix %q is reserved", field, i, v.Name, celReservedPrefix))
		case v.Name == celParamsVariable || v.Name == celObjectVariable:
			errs = append(errs, fmt.Errorf("%s.variables[%d].name: %q is reserved", field, i, v.Name))
		}
	}
	for i, mc := range src.MatchConditions {
		if strings.HasPrefix(mc.Name, celReservedPrefix) {
			errs = append(errs, fmt.Errorf("%s.matchCondition[%d].name: %q: the prefix %q is reserved", field, i, mc.Name, celReservedPrefix))
		}
	}
	failurePolicy := celDefaultFailure
	if src.FailurePolicy != nil {
		switch fp := admissionregistrationv1.FailurePolicyType(*src.FailurePolicy); fp {
		case admissionregistrationv1.Fail, admissionregistrationv1.Ignore:
			failurePolicy = fp
		default:
			errs = append(errs, fmt.Errorf("%s.failurePolicy: Unsupported value %q: supported values: Fail, Ignore", field, fp))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	compiler, err := celplugin.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	if err != nil {
		return nil, err
	}
	// Only the driver's own variables may read the whole constraint.
	withParams := celplugin.OptionalVariableDeclarations{HasParams: true}
	plain := celplugin.OptionalVariableDeclarations{}
	mode := environment.StoredExpressions

	variables := []struct {
		field string
		v     *validating.Variable
	}{
		{"", &validating.Variable{Name: celObjectVariable, Expression: `has(request.operation) && request.operation == "DELETE" && object == null ? oldObject : object`}},
		{"", &validating.Variable{Name: celParamsVariable, Expression: "!has(params.spec) ? null : !has(params.spec.parameters) ? null: params.spec.parameters"}},
	}
	for i, v := range src.Variables {
		variables = append(variables, struct {
			field string
			v     *validating.Variable
		}{fmt.Sprintf("%s.variables[%d].expression", field, i), &validating.Variable{Name: v.Name, Expression: v.Expression}})
	}
	for _, v := range variables {
		if r := compiler.CompileAndStoreVariable(v.v, withParams, mode); r.Error != nil {
			errs = append(errs, fmt.Errorf("%s: %s", v.field, r.Error.Detail))
		}
	}

	matchConditions := make([]celplugin.ExpressionAccessor, len(src.MatchConditions))
	for i, mc := range src.MatchConditions {
		matchConditions[i] = &matchconditions.MatchCondition{Name: mc.Name, Expression: mc.Expression}
		errs = appendCompileError(errs, compiler, matchConditions[i], plain, fmt.Sprintf("%s.matchCondition[%d].expression", field, i))
	}
	validations := make([]celplugin.ExpressionAccessor, len(src.Validations))
	messages := make([]celplugin.ExpressionAccessor, len(src.Validations))
	for i, v := range src.Validations {
		validations[i] = &validating.ValidationCondition{Expression: v.Expression, Message: v.Message}
		errs = appendCompileError(errs, compiler, validations[i], plain, fmt.Sprintf("%s.validations[%d].expression", field, i))
		if v.MessageExpression != "" {
			messages[i] = &validating.MessageExpressionCondition{MessageExpression: v.MessageExpression}
			errs = appendCompileError(errs, compiler, messages[i], plain, fmt.Sprintf("%s.validations[%d].messageExpression", field, i))
		}
	}
	if len(src.Validations) == 0 {
		errs = append(errs, fmt.Errorf("%s.validations: Required value: a template without validations would never report a violation", field))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	matcher := matchconditions.NewMatcher(compiler.CompileCondition(matchConditions, plain, mode), &failurePolicy, celMatcherKind, celMatcherType, celPolicyDescriptor)
	return validating.NewValidator(
		compiler.CompileCondition(validations, plain, mode),
		matcher,
		compiler.CompileCondition(nil, plain, mode),
		compiler.CompileCondition(messages, plain, mode),
		&failurePolicy,
		nil,
	), nil
}

// appendCompileError compiles e in the environment the validator will
// use, and adds its error, if any, under field.
func appendCompileError(errs []error, compiler *celplugin.CompositedCompiler, e celplugin.ExpressionAccessor, opts celplugin.OptionalVariableDeclarations, field string) []error {
	if r := compiler.CompileCELExpression(e, opts, environment.StoredExpressions); r.Error != nil {
		return append(errs, fmt.Errorf("%s: %s", field, r.Error.Detail))
	}
	return errs
}

// reviewCEL evaluates one constraint of a K8sNativeValidation template,
// as Gatekeeper's driver does (Driver.Query): the constraint object is the
// policy's params, the request's Namespace its namespaceObject, and every
// Deny decision (a failed validation, or an error under failurePolicy
// Fail) is a violation with the decision's message.
func reviewCEL(ctx context.Context, validator validating.Validator, attrs *admission.VersionedAttributes, c *Constraint, ns *corev1.Namespace) []Violation {
	result := validator.Validate(ctx, attrs.GetResource(), attrs, c.object, ns, celconfig.PerCallLimit, nil)
	var out []Violation
	for _, d := range result.Decisions {
		if d.Action == validating.ActionDeny {
			out = append(out, Violation{Constraint: c, Msg: d.Message})
		}
	}
	return out
}

// constraintObject is the constraint as CEL's params sees it: the object
// that was parsed, or else one rebuilt from its parts.
func constraintObject(c *Constraint) runtime.Object {
	spec := map[string]any{}
	if c.Parameters != nil {
		spec["parameters"] = runtime.DeepCopyJSONValue(c.Parameters)
	}
	return celParams{
		"apiVersion": ConstraintsGroup + "/v1beta1",
		"kind":       c.Kind,
		"metadata":   map[string]any{"name": c.Name},
		"spec":       spec,
	}
}

// celParams is a constraint's content handed to the validator as its
// params. Not an *unstructured.Unstructured on purpose: upstream turns a
// value that marshals itself to JSON into a CEL value by a JSON round trip
// on every evaluation (common.SchemalessTypedToVal), which made a CEL
// constraint cost three times a Rego one; a plain map is read lazily in
// place.
type celParams map[string]any

var _ runtime.Object = celParams{}

func (celParams) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

func (p celParams) DeepCopyObject() runtime.Object {
	return celParams(runtime.DeepCopyJSON(p))
}

// celNamespace converts the request's Namespace object for CEL's
// namespaceObject; nil when there is none or it does not convert.
func celNamespace(ns map[string]any) *corev1.Namespace {
	if ns == nil {
		return nil
	}
	out := &corev1.Namespace{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(ns, out); err != nil {
		return nil
	}
	return out
}
