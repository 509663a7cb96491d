package constraint

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
)

// Target is Gatekeeper's name for the admission target of templates.
const AdmissionTarget = "admission.k8s.gatekeeper.sh"

// DefaultTimeout bounds one template's evaluation for one request, like a
// webhook's timeout: Rego that runs longer denies the request.
const DefaultTimeout = 3 * time.Second

// disabledBuiltins are the OPA builtins Gatekeeper turns off by default
// (its --disable-opa-builtin flag): a policy must not call out of the
// cluster while a request waits.
var disabledBuiltins = []string{"http.send"}

// Engine holds compiled templates and their constraints and evaluates
// admission reviews against them, with Gatekeeper's semantics. It is safe
// for concurrent use.
type Engine struct {
	timeout      time.Duration
	capabilities *ast.Capabilities

	// store holds data.inventory, which prepared queries read at
	// evaluation time. Constraint parameters are not stored: each
	// evaluation gets them as input.parameters, converted to Rego once per
	// constraint change.
	store storage.Store

	mu          sync.RWMutex
	templates   map[string]*compiledTemplate // by constraint kind
	constraints map[string]map[string]*Constraint

	// exclusions are the Config's spec.match, replaced whole when it
	// changes; nil until a Config is read.
	exclusions atomic.Pointer[Exclusions]
	// expander, when set, expands workloads (ExpansionTemplates).
	expander atomic.Pointer[Expander]
	// exempt are the namespaces exempt besides gatekeeper-system.
	exempt atomic.Pointer[Exempt]
	// externalData answers external_data (SetExternalData).
	externalData ExternalData
}

// SetExempt sets the namespaces Gatekeeper's webhooks leave alone besides
// gatekeeper-system (gatehouse up --exempt-namespace).
func (e *Engine) SetExempt(namespaces []string) {
	x := Exempt(slices.Clone(namespaces))
	e.exempt.Store(&x)
}

// Exempt returns the namespaces exempt besides gatekeeper-system.
func (e *Engine) Exempt() Exempt {
	if x := e.exempt.Load(); x != nil {
		return *x
	}
	return nil
}

// Expander turns a workload into the resources it would create, as
// Gatekeeper's ExpansionTemplates do (package expansion implements it).
type Expander interface {
	// Expand returns the resources obj expands into, mutated by the
	// mutators that apply to generated resources; none when no template
	// applies to its kind. namespace is obj's Namespace object.
	Expand(obj *unstructured.Unstructured, namespace map[string]any) ([]Resultant, error)
	// Generators are the kinds that expand, which the audit lists too.
	Generators() []string
	// Expands reports whether some template applies to gvk, so that
	// requests for other kinds skip expansion without copying anything.
	Expands(gvk schema.GroupVersionKind) bool
}

// Resultant is one resource expanded from a workload: the mock object,
// the ExpansionTemplate that made it, and that template's enforcement
// action override ("" for none).
type Resultant struct {
	Object            *unstructured.Unstructured
	Template          string
	EnforcementAction string
}

// SetExpander makes the admission plugin and the audit also review what
// workloads expand into.
func (e *Engine) SetExpander(x Expander) { e.expander.Store(&x) }

// expansion returns the Expander, or nil.
func (e *Engine) expansion() Expander {
	if x := e.expander.Load(); x != nil {
		return *x
	}
	return nil
}

// Expands reports whether objects of kind gvk are expanded (see Expander).
func (e *Engine) Expands(gvk schema.GroupVersionKind) bool {
	x := e.expansion()
	return x != nil && x.Expands(gvk)
}

// ReviewExpanded reviews what obj expands into (see Expander), each
// resultant as Gatekeeper reviews it (as its audit reviews an existing
// object, with source Generated), and returns their violations with
// Gatekeeper's "[Implied by <template>]" prefix and the template's
// enforcement action override. explain, when set, is told per resultant
// and constraint whether the constraint matched.
func (e *Engine) ReviewExpanded(ctx context.Context, obj *unstructured.Unstructured, namespace map[string]any, explain func(r *Resultant, c *Constraint, matched bool, reason string)) ([]Violation, error) {
	x := e.expansion()
	if x == nil || obj == nil {
		return nil, nil
	}
	resultants, err := x.Expand(obj, namespace)
	if err != nil {
		return nil, fmt.Errorf("expanding %s %s: %w", obj.GetKind(), objectName(obj.GetNamespace(), obj.GetName()), err)
	}
	var out []Violation
	for i := range resultants {
		r := &resultants[i]
		review, err := AuditReview(r.Object, namespace)
		if err != nil {
			return nil, err
		}
		target := AuditTarget(r.Object, namespace)
		target.Generated = true
		if explain != nil {
			target.Explain = func(c *Constraint, matched bool, reason string) { explain(r, c, matched, reason) }
		}
		violations, err := e.Review(ctx, review, target)
		if err != nil {
			return nil, fmt.Errorf("reviewing the %s implied by %s: %w", r.Object.GetKind(), r.Template, err)
		}
		for _, v := range violations {
			v.Msg = fmt.Sprintf("[Implied by %s] %s", r.Template, v.Msg)
			v.EnforcementAction = r.EnforcementAction
			out = append(out, v)
		}
	}
	return out, nil
}

// Exclusions returns the namespace exclusions of Gatekeeper's Config in
// force, or nil (which excludes nothing).
func (e *Engine) Exclusions() *Exclusions { return e.exclusions.Load() }

// SetExclusions puts x in force.
func (e *Engine) SetExclusions(x *Exclusions) { e.exclusions.Store(x) }

// TemplateSource is the code of one ConstraintTemplate's admission target:
// its Rego, or its K8sNativeValidation (CEL) source when it has one, which
// Gatekeeper prefers when a template carries both.
type TemplateSource struct {
	// Name is the template's metadata.name, Kind its constraint kind.
	Name, Kind string
	Rego       string
	Libs       []string
	// CEL, when set, is evaluated instead of Rego; CELField is the path
	// of its source in the template, for error messages.
	CEL      *CELSource
	CELField string
}

// Constraint is one constraint object as the engine needs it.
type Constraint struct {
	Kind, Name        string
	Match             Match
	EnforcementAction string // deny (default), warn, dryrun or scoped
	// scoped are the entries of spec.scopedEnforcementActions, in order.
	scoped     []scopedAction
	Parameters map[string]any

	// params is Parameters as a Rego term, converted once.
	params *ast.Term
	// object is the constraint itself: CEL templates see it as params.
	object runtime.Object
}

// Violation is one violation a constraint reported.
type Violation struct {
	Constraint *Constraint
	Msg        string
	Details    any
	// EnforcementAction, when set, replaces the constraint's actions: an
	// ExpansionTemplate's override for the resources it expands.
	EnforcementAction string
}

type compiledTemplate struct {
	source TemplateSource
	query  rego.PreparedEvalQuery
	// cel is set for a K8sNativeValidation template, instead of query.
	cel validating.Validator
}

// NewEngine returns an empty engine; timeout <= 0 means DefaultTimeout.
func NewEngine(timeout time.Duration) *Engine {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	caps := ast.CapabilitiesForThisVersion()
	caps.Builtins = slices.DeleteFunc(slices.Clone(caps.Builtins), func(b *ast.Builtin) bool {
		return slices.Contains(disabledBuiltins, b.Name)
	})
	return &Engine{
		timeout:      timeout,
		capabilities: caps,
		store:        inmem.NewFromObject(map[string]any{"inventory": map[string]any{}}),
		templates:    map[string]*compiledTemplate{},
		constraints:  map[string]map[string]*Constraint{},
	}
}

// CompileError is a template whose Rego does not compile; Error names the
// template and carries OPA's messages with their line numbers.
type CompileError struct {
	Template string
	Err      error
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("template %s: %v", e.Template, e.Err)
}

func (e *CompileError) Unwrap() error { return e.Err }

// AddTemplate compiles src and makes it the template for src.Kind,
// replacing an earlier version. On error the earlier version stays.
func (e *Engine) AddTemplate(ctx context.Context, src TemplateSource) error {
	if src.CEL != nil {
		validator, err := compileCEL(src.CEL, src.celField())
		if err != nil {
			return &CompileError{Template: src.Name, Err: err}
		}
		e.install(&compiledTemplate{source: src, cel: validator})
		return nil
	}
	compiler, err := e.compile(src)
	if err != nil {
		return &CompileError{Template: src.Name, Err: err}
	}
	options := []func(*rego.Rego){
		rego.Compiler(compiler),
		rego.Store(e.store),
		rego.Query("data.template.violation"),
	}
	if x := e.externalDataOption(); x != nil {
		options = append(options, x)
	}
	query, err := rego.New(options...).PrepareForEval(ctx)
	if err != nil {
		return &CompileError{Template: src.Name, Err: err}
	}
	e.install(&compiledTemplate{source: src, query: query})
	return nil
}

func (e *Engine) install(t *compiledTemplate) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.templates[t.source.Kind] = t
}

func (src TemplateSource) celField() string {
	if src.CELField == "" {
		return "source"
	}
	return src.CELField
}

// Check compiles src without installing it.
func (e *Engine) Check(src TemplateSource) error {
	if src.CEL != nil {
		if _, err := compileCEL(src.CEL, src.celField()); err != nil {
			return &CompileError{Template: src.Name, Err: err}
		}
		return nil
	}
	if _, err := e.compile(src); err != nil {
		return &CompileError{Template: src.Name, Err: err}
	}
	return nil
}

// ConstraintNames lists the names of kind's constraints, sorted.
func (e *Engine) ConstraintNames(kind string) []string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return slices.Sorted(maps.Keys(e.constraints[kind]))
}

// RemoveTemplate forgets the template for kind and its constraints.
func (e *Engine) RemoveTemplate(ctx context.Context, kind string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.templates, kind)
	delete(e.constraints, kind)
	return nil
}

// HasTemplate reports whether a template for kind is compiled.
func (e *Engine) HasTemplate(kind string) bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.templates[kind] != nil
}

// AddConstraint adds or replaces a constraint. Its template must exist.
func (e *Engine) AddConstraint(ctx context.Context, c *Constraint) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.templates[c.Kind] == nil {
		return fmt.Errorf("constraint %s %s: no ConstraintTemplate defines kind %s", c.Kind, c.Name, c.Kind)
	}
	params := c.Parameters
	if params == nil {
		params = map[string]any{} // so templates need not default it
	}
	value, err := ast.InterfaceToValue(params)
	if err != nil {
		return fmt.Errorf("constraint %s %s: spec.parameters: %w", c.Kind, c.Name, err)
	}
	c.params = ast.NewTerm(value)
	if c.object == nil {
		c.object = constraintObject(c)
	}
	if e.constraints[c.Kind] == nil {
		e.constraints[c.Kind] = map[string]*Constraint{}
	}
	e.constraints[c.Kind][c.Name] = c
	return nil
}

// RemoveConstraint forgets one constraint.
func (e *Engine) RemoveConstraint(ctx context.Context, kind, name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.constraints[kind], name)
	return nil
}

// Review evaluates every constraint whose match selects target against
// review (Gatekeeper's input.review). A template that fails or times out
// yields one violation per constraint it was evaluating, naming the
// failure, as Gatekeeper does; the error return is for the engine itself.
func (e *Engine) Review(ctx context.Context, review map[string]any, target *Target) ([]Violation, error) {
	e.mu.RLock()
	type job struct {
		tmpl *compiledTemplate
		// constraints are the matched ones, copied so that evaluation
		// runs without the lock while constraints change.
		constraints map[string]*Constraint
	}
	var jobs []job
	for kind, byName := range e.constraints {
		j := job{tmpl: e.templates[kind], constraints: map[string]*Constraint{}}
		for name, c := range byName {
			ok, reason, err := c.Match.Matches(target)
			if err != nil {
				e.mu.RUnlock()
				return nil, fmt.Errorf("constraint %s %s: match: %w", kind, name, err)
			}
			if target.Explain != nil {
				target.Explain(c, ok, reason)
			}
			if ok {
				j.constraints[name] = c
			}
		}
		if len(j.constraints) > 0 && j.tmpl != nil {
			jobs = append(jobs, j)
		}
	}
	e.mu.RUnlock()
	if len(jobs) == 0 {
		return nil, nil
	}

	var (
		out []Violation
		// The review becomes a Rego value once per request, not once per
		// template or constraint, and only when a Rego template matched.
		reviewTerm *ast.Term
		// One read transaction for the whole request instead of one per
		// evaluation.
		txn storage.Transaction
		// The Namespace as CEL's namespaceObject, converted once.
		celNS        *corev1.Namespace
		celConverted bool
	)
	for _, j := range jobs {
		if j.tmpl.cel != nil {
			if target.Attributes == nil {
				return nil, fmt.Errorf("template %s: K8sNativeValidation needs the request's attributes", j.tmpl.source.Name)
			}
			if !celConverted {
				celNS, celConverted = celNamespace(target.NamespaceObject), true
			}
			evalCtx, cancel := context.WithTimeout(ctx, e.timeout)
			start, before := time.Now(), len(out)
			for _, c := range j.constraints {
				out = append(out, reviewCEL(evalCtx, j.tmpl.cel, target.Attributes, c, celNS)...)
			}
			cancel()
			observeTemplate(j.tmpl.source.Name, start, len(out) > before, false)
			continue
		}
		if reviewTerm == nil {
			reviewValue, err := ast.InterfaceToValue(review)
			if err != nil {
				return nil, fmt.Errorf("converting the review for Rego: %w", err)
			}
			reviewTerm = ast.NewTerm(reviewValue)
			txn, err = e.store.NewTransaction(ctx)
			if err != nil {
				return nil, err
			}
			defer e.store.Abort(ctx, txn)
		}
		evalCtx, cancel := context.WithTimeout(ctx, e.timeout)
		start, before, failed := time.Now(), len(out), false
		for _, c := range j.constraints {
			input := ast.NewObject(
				ast.Item(ast.StringTerm("review"), reviewTerm),
				ast.Item(ast.StringTerm("parameters"), c.params),
			)
			rs, err := j.tmpl.query.Eval(evalCtx, rego.EvalParsedInput(input), rego.EvalTransaction(txn))
			if err != nil {
				msg := err.Error()
				if errors.Is(evalCtx.Err(), context.DeadlineExceeded) {
					msg = fmt.Sprintf("template %s did not finish within %s", j.tmpl.source.Name, e.timeout)
				}
				out = append(out, Violation{Constraint: c, Msg: msg})
				failed = true
				continue
			}
			vs, err := toViolations(rs, c)
			if err != nil {
				cancel()
				return nil, fmt.Errorf("template %s: %w", j.tmpl.source.Name, err)
			}
			out = append(out, vs...)
		}
		cancel()
		observeTemplate(j.tmpl.source.Name, start, len(out) > before, failed)
	}
	slices.SortStableFunc(out, func(a, b Violation) int {
		return strings.Compare(a.Constraint.Kind+"/"+a.Constraint.Name+"\x00"+a.Msg, b.Constraint.Kind+"/"+b.Constraint.Name+"\x00"+b.Msg)
	})
	return out, nil
}

// toViolations reads the violation set data.template.violation evaluated
// to for one constraint.
func toViolations(rs rego.ResultSet, c *Constraint) ([]Violation, error) {
	var out []Violation
	for _, r := range rs {
		for _, expr := range r.Expressions {
			set, ok := expr.Value.([]any)
			if !ok {
				return nil, fmt.Errorf("violation is %T, want a set", expr.Value)
			}
			for _, item := range set {
				m, ok := item.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("violation %v is not an object", item)
				}
				raw, ok := m["msg"]
				if !ok {
					// Gatekeeper's hook reads r.msg: a violation without
					// one yields no result there, so none here either.
					continue
				}
				msg, ok := raw.(string)
				if !ok {
					// Gatekeeper requires msg to be a string; a template
					// that builds something else is reported, not passed.
					msg = fmt.Sprintf("%v", raw)
				}
				details, ok := m["details"]
				if !ok {
					details = map[string]any{}
				}
				out = append(out, Violation{Constraint: c, Msg: msg, Details: details})
			}
		}
	}
	return out, nil
}

// observeTemplate records one template's evaluation for one object.
func observeTemplate(template string, start time.Time, violation, failed bool) {
	result := "pass"
	switch {
	case failed:
		result = "error"
	case violation:
		result = "violation"
	}
	templateEvaluations.WithLabelValues(template, result).Observe(time.Since(start).Seconds())
}
