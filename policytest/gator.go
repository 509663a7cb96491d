package policytest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/gatehouse-dev/gatehouse/admission/constraint"
	"github.com/gatehouse-dev/gatehouse/admission/expansion"
	"github.com/gatehouse-dev/gatehouse/admission/mutation"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// GatorEnforcementPoint is the enforcement point gator reviews at: a
// constraint with scopedEnforcementActions takes part only if one of its
// entries names it (or "*").
const GatorEnforcementPoint = "gator.gatekeeper.sh"

// Runner runs suites.
type Runner struct {
	// FS holds the suites and the files they name.
	FS fs.FS
	// Filter, when set, runs only the cases whose "test/case" name it
	// matches (as go test -run).
	Filter *regexp.Regexp
}

// CaseResult is the outcome of one case, or of a test that failed before
// its cases could run (Case is then empty).
type CaseResult struct {
	Test, Case string
	Skipped    bool
	// Failures say what was expected and what came; none means passed.
	Failures []string
	// Violations are what the review reported, as "[Kind name] msg".
	Violations []string
	Duration   time.Duration
}

// Name is "test/case", or the test's name for a test-level result.
func (r CaseResult) Name() string {
	if r.Case == "" {
		return r.Test
	}
	return r.Test + "/" + r.Case
}

// Passed reports whether the case ran and passed.
func (r CaseResult) Passed() bool { return !r.Skipped && len(r.Failures) == 0 }

// SuiteResult is the outcome of one suite.
type SuiteResult struct {
	Path     string
	Cases    []CaseResult
	Duration time.Duration
	// Policies are the constraints the suite loaded, by "test: Kind name",
	// and whether any case made them report a violation.
	Policies map[string]bool
}

// Failed reports whether any case failed.
func (s SuiteResult) Failed() bool {
	for _, c := range s.Cases {
		if !c.Skipped && len(c.Failures) > 0 {
			return true
		}
	}
	return false
}

// Run runs every test of a suite.
func (r *Runner) Run(ctx context.Context, s *Suite) SuiteResult {
	start := time.Now()
	res := SuiteResult{Path: s.Path, Policies: map[string]bool{}}
	dir := path.Dir(s.Path)
	for i := range s.Tests {
		t := &s.Tests[i]
		if s.Skip || t.Skip {
			res.Cases = append(res.Cases, CaseResult{Test: t.Name, Skipped: true})
			continue
		}
		res.Cases = append(res.Cases, r.runTest(ctx, dir, t, res.Policies)...)
	}
	res.Duration = time.Since(start)
	return res
}

// loaded is a test's template and constraint, ready to review with.
type loaded struct {
	source     constraint.TemplateSource
	constraint *constraint.Constraint
	engine     *constraint.Engine
	// expander holds the test's ExpansionTemplates (and mutators), nil
	// without an expansion file.
	expander *expansion.System
}

// engineWith returns a fresh engine with the test's template and
// constraint, for a case that brings its own inventory.
func (l *loaded) engineWith(ctx context.Context) (*constraint.Engine, error) {
	e := constraint.NewEngine(0)
	if err := e.AddTemplate(ctx, l.source); err != nil {
		return nil, err
	}
	c := *l.constraint
	if err := e.AddConstraint(ctx, &c); err != nil {
		return nil, err
	}
	if l.expander != nil {
		e.SetExpander(l.expander)
	}
	return e, nil
}

// loadExpansion reads a test's expansion file, as gator verify does: its
// ExpansionTemplates, and the mutators that shape what they expand into.
func (r *Runner) loadExpansion(dir, name string) (*expansion.System, error) {
	objs, err := r.readAll(dir, name)
	if err != nil {
		return nil, err
	}
	mutators := mutation.NewSystem()
	sys := expansion.NewSystem(mutators)
	templates := 0
	for _, o := range objs {
		switch o.GroupVersionKind().Group {
		case expansion.Group:
			t, err := expansion.Parse(o)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
			}
			sys.Upsert(t)
			templates++
		case mutation.Group:
			m, err := mutation.Parse(o)
			if err == nil {
				err = mutators.Upsert(m)
			}
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
			}
		default:
			return nil, fmt.Errorf("%s %s: only ExpansionTemplates and Gatekeeper mutators belong in an expansion file", o.GetKind(), o.GetName())
		}
	}
	if templates == 0 {
		return nil, errors.New("no ExpansionTemplate in the file")
	}
	return sys, nil
}

func (r *Runner) runTest(ctx context.Context, dir string, t *Test, covered map[string]bool) []CaseResult {
	start := time.Now()
	fail := func(format string, args ...any) []CaseResult {
		return []CaseResult{{Test: t.Name, Failures: []string{fmt.Sprintf(format, args...)}, Duration: time.Since(start)}}
	}
	if r.Filter != nil {
		// A test without cases runs when the filter matches its name; one
		// with cases when it matches one of them.
		selected := len(t.Cases) == 0 && r.Filter.MatchString(t.Name)
		for _, tc := range t.Cases {
			selected = selected || r.selects(t.Name, tc.Name)
		}
		if !selected {
			return nil
		}
	}
	if t.Template == "" {
		return fail("template: Required value")
	}
	if t.Constraint == "" {
		return fail("constraint: Required value")
	}
	tu, err := r.readOne(dir, t.Template)
	if err != nil {
		return fail("template: %v", err)
	}
	tmpl, err := constraint.ParseTemplate(tu)
	if err != nil {
		return fail("template %s: ConstraintTemplate %s: %v", t.Template, tu.GetName(), err)
	}
	engine := constraint.NewEngine(0)
	if err := engine.AddTemplate(ctx, tmpl.Source()); err != nil {
		return fail("template %s: %v", t.Template, err)
	}
	cu, err := r.readOne(dir, t.Constraint)
	if err != nil {
		return fail("constraint: %v", err)
	}
	validator, err := constraint.NewConstraintValidator(tmpl)
	if err != nil {
		return fail("template %s: %v", t.Template, err)
	}
	c, err := validator.Validate(cu)
	var schemaErr *constraint.SchemaError
	switch {
	case t.Invalid && errors.As(err, &schemaErr):
		return []CaseResult{{Test: t.Name, Duration: time.Since(start)}}
	case t.Invalid:
		return fail("constraint %s: want it refused by the template's schema (invalid: true), got %v", t.Constraint, errOrAccepted(err))
	case err != nil:
		return fail("constraint %s: %s %s: %v", t.Constraint, cu.GetKind(), cu.GetName(), err)
	}
	if err := engine.AddConstraint(ctx, c); err != nil {
		return fail("constraint %s: %v", t.Constraint, err)
	}
	policy := t.Name + ": " + c.Kind + " " + c.Name
	covered[policy] = covered[policy] || false
	l := &loaded{source: tmpl.Source(), constraint: c, engine: engine}
	if t.Expansion != "" {
		if l.expander, err = r.loadExpansion(dir, t.Expansion); err != nil {
			return fail("expansion %s: %v", t.Expansion, err)
		}
		engine.SetExpander(l.expander)
	}

	var out []CaseResult
	for _, tc := range t.Cases {
		if !r.selects(t.Name, tc.Name) {
			continue
		}
		if tc.Skip {
			out = append(out, CaseResult{Test: t.Name, Case: tc.Name, Skipped: true})
			continue
		}
		cr := r.runCase(ctx, dir, l, tc)
		cr.Test = t.Name
		if len(cr.Violations) > 0 {
			covered[policy] = true
		}
		out = append(out, cr)
	}
	return out
}

func errOrAccepted(err error) string {
	if err == nil {
		return "it accepted"
	}
	return err.Error()
}

// selects reports whether the filter runs case tc of test.
func (r *Runner) selects(test, tc string) bool {
	return r.Filter == nil || r.Filter.MatchString(test+"/"+tc)
}

func (r *Runner) runCase(ctx context.Context, dir string, l *loaded, tc *Case) (res CaseResult) {
	start := time.Now()
	res.Case = tc.Name
	defer func() { res.Duration = time.Since(start) }()
	failed := func(format string, args ...any) CaseResult {
		res.Failures = append(res.Failures, fmt.Sprintf(format, args...))
		return res
	}
	if tc.Object == "" {
		return failed("object: Required value")
	}
	if len(tc.Assertions) == 0 {
		return failed("assertions: a case needs at least one")
	}
	obj, err := r.readOne(dir, tc.Object)
	if err != nil {
		return failed("object: %v", err)
	}
	engine := l.engine
	if len(tc.Inventory) > 0 {
		if engine, err = l.engineWith(ctx); err != nil {
			return failed("%v", err)
		}
		for _, p := range tc.Inventory {
			objs, err := r.readAll(dir, p)
			if err != nil {
				return failed("inventory: %v", err)
			}
			for _, o := range objs {
				if err := engine.SetInventory(ctx, o); err != nil {
					return failed("inventory %s: %s %s: %v", p, o.GetKind(), o.GetName(), err)
				}
			}
		}
	}

	var review map[string]any
	var target *constraint.Target
	if obj.GetKind() == "AdmissionReview" && obj.GroupVersionKind().Group == admissionv1.SchemeGroupVersion.Group {
		ar := &admissionv1.AdmissionReview{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj.Object, ar, true); err != nil {
			return failed("object %s: not an AdmissionReview: %v", tc.Object, err)
		}
		if ar.Request == nil {
			return failed("object %s: the AdmissionReview has no request", tc.Object)
		}
		review, target, err = constraint.RequestReview(ar.Request, nil)
		if err == nil && target.Object != nil {
			obj = &unstructured.Unstructured{Object: target.Object}
			obj.SetGroupVersionKind(target.GVK)
			obj.SetNamespace(target.Namespace)
		} else {
			obj = nil
		}
	} else {
		review, err = constraint.AuditReview(obj, nil)
		target = constraint.AuditTarget(obj, nil)
	}
	if err != nil {
		return failed("object %s: %v", tc.Object, err)
	}
	violations, err := engine.Review(ctx, review, target)
	if err != nil {
		return failed("reviewing %s %s: %v", target.GVK.Kind, target.Name, err)
	}
	// gator verify also reviews what the object expands into, with the
	// "[Implied by <template>]" prefix.
	if l.expander != nil && obj != nil {
		expanded, err := engine.ReviewExpanded(ctx, obj, nil, nil)
		if err != nil {
			return failed("%v", err)
		}
		violations = append(violations, expanded...)
	}
	var msgs []string
	for _, v := range violations {
		if c := v.Constraint; c.EnforcementAction == constraint.ActionScoped && len(c.ActionsAt(GatorEnforcementPoint)) == 0 {
			continue
		}
		msgs = append(msgs, v.Msg)
		res.Violations = append(res.Violations, fmt.Sprintf("[%s %s] %s", v.Constraint.Kind, v.Constraint.Name, v.Msg))
	}
	for i, a := range tc.Assertions {
		if err := a.check(msgs); err != nil {
			res.Failures = append(res.Failures, fmt.Sprintf("assertion %d (%s): %v", i+1, a, err))
		}
	}
	return res
}

// String describes the assertion as written.
func (a Assertion) String() string {
	s := "violations: yes"
	if a.Violations != nil {
		s = "violations: " + a.Violations.String()
	}
	if a.Message != nil {
		s += fmt.Sprintf(", message: %q", *a.Message)
	}
	return s
}

func compileMessage(expr string) (*regexp.Regexp, error) {
	return regexp.Compile(expr)
}

// check counts the messages the assertion's message matches and compares
// with its violations, as gator does.
func (a Assertion) check(msgs []string) error {
	matching := 0
	if a.Message == nil {
		matching = len(msgs)
	} else {
		re, err := compileMessage(*a.Message)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if re.MatchString(m) {
				matching++
			}
		}
	}
	what := "violations"
	if a.Message != nil {
		what = fmt.Sprintf("violations matching %q", *a.Message)
	}
	want := intstr.FromString("yes")
	if a.Violations != nil {
		want = *a.Violations
	}
	switch {
	case want.Type == intstr.Int && matching != int(want.IntVal):
		return fmt.Errorf("got %d %s, want exactly %d", matching, what, want.IntVal)
	case want.Type == intstr.String && want.StrVal == "yes" && matching == 0:
		return fmt.Errorf("got no %s, want at least one", what)
	case want.Type == intstr.String && want.StrVal == "no" && matching > 0:
		return fmt.Errorf("got %d %s, want none", matching, what)
	}
	return nil
}

// readAll reads the objects of a file the suite names, relative to dir.
func (r *Runner) readAll(dir, name string) ([]*unstructured.Unstructured, error) {
	p := Resolve(dir, name)
	data, err := fs.ReadFile(r.FS, p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, unwrapPath(err))
	}
	docs, derrs := policies.ReadFile(p, data, policies.ForReview)
	if len(derrs) > 0 {
		msgs := make([]string, len(derrs))
		for i, e := range derrs {
			msgs[i] = e.Error()
		}
		return nil, errors.New(strings.Join(msgs, "; "))
	}
	objs := make([]*unstructured.Unstructured, len(docs))
	for i, d := range docs {
		objs[i] = d.Object
	}
	return objs, nil
}

// readOne reads a file that must hold exactly one object.
func (r *Runner) readOne(dir, name string) (*unstructured.Unstructured, error) {
	objs, err := r.readAll(dir, name)
	if err != nil {
		return nil, err
	}
	if len(objs) != 1 {
		return nil, fmt.Errorf("%s: holds %d objects, want exactly one", Resolve(dir, name), len(objs))
	}
	return objs[0], nil
}
