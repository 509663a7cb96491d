package constraint

import (
	"errors"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// Template is what Gatehouse reads from a ConstraintTemplate.
type Template struct {
	Name       string
	Kind       string
	ShortNames []string
	// Schema is spec.crd.spec.validation.openAPIV3Schema: the schema of
	// the constraints' spec.parameters.
	Schema       map[string]any
	LegacySchema bool
	// Rego and Libs come from the admission target's Rego engine code
	// (spec.targets[].code[engine=Rego].source) or, for templates written
	// the older way, its rego and libs fields.
	Rego string
	Libs []string
	// Engines lists the engines of the admission target's code, e.g.
	// K8sNativeValidation (CEL) and Rego.
	Engines []string
	// CEL is the K8sNativeValidation code's source, CELField its path.
	CEL      *CELSource
	CELField string
}

// Source is the template's code as the engine compiles it. When the
// template carries both engines, Gatekeeper evaluates the CEL one (its
// K8sNativeValidation driver is registered first and so has priority:
// driverForTemplate in frameworks' pkg/client), and so does Gatehouse.
func (t *Template) Source() TemplateSource {
	return TemplateSource{Name: t.Name, Kind: t.Kind, Rego: t.Rego, Libs: t.Libs, CEL: t.CEL, CELField: t.CELField}
}

// HasCode reports whether the template carries code an engine runs.
func (t *Template) HasCode() bool {
	return t.Rego != "" || t.CEL != nil
}

// ParseTemplate reads a ConstraintTemplate object. Errors name the field.
func ParseTemplate(u *unstructured.Unstructured) (*Template, error) {
	t := &Template{Name: u.GetName()}
	obj := u.Object
	kind, _, err := unstructured.NestedString(obj, "spec", "crd", "spec", "names", "kind")
	if err != nil {
		return nil, fmt.Errorf("spec.crd.spec.names.kind: %w", err)
	}
	if kind == "" {
		return nil, errors.New("spec.crd.spec.names.kind: Required value")
	}
	t.Kind = kind
	t.ShortNames, _, _ = unstructured.NestedStringSlice(obj, "spec", "crd", "spec", "names", "shortNames")
	t.Schema, _, _ = unstructured.NestedMap(obj, "spec", "crd", "spec", "validation", "openAPIV3Schema")
	t.LegacySchema, _, _ = unstructured.NestedBool(obj, "spec", "crd", "spec", "validation", "legacySchema")

	targets, _, err := unstructured.NestedSlice(obj, "spec", "targets")
	if err != nil {
		return nil, fmt.Errorf("spec.targets: %w", err)
	}
	found := false
	for i, raw := range targets {
		target, ok := raw.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("spec.targets[%d]: not an object", i)
		}
		if name, _ := target["target"].(string); name != AdmissionTarget {
			continue
		}
		if found {
			return nil, fmt.Errorf("spec.targets[%d]: target %s is listed twice", i, AdmissionTarget)
		}
		found = true
		t.Rego, _, _ = unstructured.NestedString(target, "rego")
		t.Libs, _, _ = unstructured.NestedStringSlice(target, "libs")
		code, _, _ := unstructured.NestedSlice(target, "code")
		for j, rawCode := range code {
			c, _ := rawCode.(map[string]any)
			engine, _ := c["engine"].(string)
			t.Engines = append(t.Engines, engine)
			if engine == EngineCEL {
				field := fmt.Sprintf("spec.targets[%d].code[%d].source", i, j)
				source, ok := c["source"].(map[string]any)
				if !ok {
					return nil, fmt.Errorf("%s: Required value: the %s code has no source", field, EngineCEL)
				}
				src, err := parseCELSource(source)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", field, err)
				}
				t.CEL, t.CELField = src, field
				continue
			}
			if engine != EngineRego {
				continue
			}
			rego, _, err := unstructured.NestedString(c, "source", "rego")
			if err != nil {
				return nil, fmt.Errorf("spec.targets[%d].code[%d].source.rego: %w", i, j, err)
			}
			libs, _, err := unstructured.NestedStringSlice(c, "source", "libs")
			if err != nil {
				return nil, fmt.Errorf("spec.targets[%d].code[%d].source.libs: %w", i, j, err)
			}
			t.Rego, t.Libs = rego, libs
		}
	}
	if !found {
		return nil, fmt.Errorf("spec.targets: no target %s", AdmissionTarget)
	}
	return t, nil
}

// ParseConstraint reads a constraint object of a template's kind.
func ParseConstraint(u *unstructured.Unstructured) (*Constraint, error) {
	c := &Constraint{Kind: u.GetKind(), Name: u.GetName()}
	spec, _, err := unstructured.NestedMap(u.Object, "spec")
	if err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	if m, ok := spec["match"].(map[string]any); ok {
		if err := fromUnstructured(m, &c.Match); err != nil {
			return nil, fmt.Errorf("spec.match: %w", err)
		}
	}
	c.EnforcementAction, _, _ = unstructured.NestedString(spec, "enforcementAction")
	switch c.EnforcementAction {
	case "", ActionDeny, ActionWarn, ActionDryRun, ActionScoped:
	default:
		return nil, fmt.Errorf("spec.enforcementAction: Unsupported value %q: supported values: deny, warn, dryrun, scoped", c.EnforcementAction)
	}
	if c.EnforcementAction == ActionScoped {
		scoped, _, _ := unstructured.NestedSlice(spec, "scopedEnforcementActions")
		for i, raw := range scoped {
			entry, _ := raw.(map[string]any)
			sa := scopedAction{}
			sa.action, _ = entry["action"].(string)
			points, _ := entry["enforcementPoints"].([]any)
			for _, p := range points {
				point, _ := p.(map[string]any)
				name, _ := point["name"].(string)
				sa.points = append(sa.points, name)
			}
			if sa.at(EnforcementPoint) && sa.action != ActionDeny && sa.action != ActionWarn && sa.action != ActionDryRun {
				return nil, fmt.Errorf("spec.scopedEnforcementActions[%d].action: Unsupported value %q", i, sa.action)
			}
			if sa.action != "" {
				c.scoped = append(c.scoped, sa)
			}
		}
	}
	c.Parameters, _, _ = unstructured.NestedMap(spec, "parameters")
	c.object = celParams(u.Object)
	return c, nil
}

// fromUnstructured decodes strictly, so a misspelled match field is an
// error instead of a constraint that silently matches everything.
func fromUnstructured(m map[string]any, into any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(m, into, true)
}

// scopedAction is one entry of spec.scopedEnforcementActions.
type scopedAction struct {
	action string
	points []string
}

// at reports whether the entry names enforcement point ep, or all ("*").
func (sa scopedAction) at(ep string) bool {
	return slices.Contains(sa.points, ep) || slices.Contains(sa.points, "*")
}

// ActionsAt are the actions of a scoped constraint at enforcement point ep,
// in entry order, each once (the frameworks' enforcementActionsForEP).
func (c *Constraint) ActionsAt(ep string) []string {
	var out []string
	for _, sa := range c.scoped {
		if sa.at(ep) && !slices.Contains(out, sa.action) {
			out = append(out, sa.action)
		}
	}
	return out
}
