package trace

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/warning"
)

// Decorator returns the admission decorator that records every plugin's
// call into the request's trace. Requests without a trace (those the
// Record does not open one for) pass through untouched.
//
// For the plugins in patched, each step also carries the JSON Patch of
// what the plugin changed to the object, when the plugin's Changes says it
// may change this request's: those that run users' mutating policies
// (MutatingAdmissionPolicy, mutating webhooks, Gatekeeper's mutators).
// Other plugins' changes (defaults, tolerations) are left out: a patch
// costs two copies of the object.
func Decorator(explainers map[string]Explainer, patched map[string]Changes) admission.Decorator {
	return admission.DecoratorFunc(func(handler admission.Interface, name string) admission.Interface {
		return decorate(handler, name, explainers[name], patched[name])
	})
}

// Changes says whether a mutating plugin may change the request's object:
// whether one of its policies, webhooks or mutators covers the request.
type Changes func(a admission.Attributes, o admission.ObjectInterfaces) bool

func decorate(handler admission.Interface, name string, explainer Explainer, patched Changes) admission.Interface {
	base := plugin{Interface: handler, name: name, index: pluginIndex(name), explainer: explainer, patched: patched}
	mut, isMut := handler.(admission.MutationInterface)
	val, isVal := handler.(admission.ValidationInterface)
	// The wrapper implements exactly the interfaces of the plugin: the
	// chain decides what to call by type assertion.
	switch {
	case isMut && isVal:
		return &mutatingValidating{mutating{base, mut}, validating{base, val}}
	case isMut:
		return &mutating{base, mut}
	case isVal:
		return &validating{base, val}
	}
	return &base
}

type plugin struct {
	admission.Interface
	name      string
	index     uint16 // in pluginNames
	explainer Explainer
	patched   Changes
}

type mutating struct {
	plugin
	inner admission.MutationInterface
}

type validating struct {
	plugin
	inner admission.ValidationInterface
}

type mutatingValidating struct {
	mutating
	validating
}

var (
	_ admission.MutationInterface   = &mutating{}
	_ admission.ValidationInterface = &validating{}
	_ admission.MutationInterface   = &mutatingValidating{}
	_ admission.ValidationInterface = &mutatingValidating{}
)

func (m *mutatingValidating) Handles(op admission.Operation) bool {
	return m.mutating.Handles(op)
}

func (m *mutating) Admit(ctx context.Context, a admission.Attributes, o admission.ObjectInterfaces) error {
	return record(ctx, m.plugin, "mutating", a, o, func(ctx context.Context, a admission.Attributes) error { return m.inner.Admit(ctx, a, o) })
}

func (v *validating) Validate(ctx context.Context, a admission.Attributes, o admission.ObjectInterfaces) error {
	return record(ctx, v.plugin, "validating", a, o, func(ctx context.Context, a admission.Attributes) error { return v.inner.Validate(ctx, a, o) })
}

// runsManyPolicies are upstream's plugins that run many policies or
// webhooks.
var runsManyPolicies = map[string]bool{
	"ValidatingAdmissionPolicy": true, "ValidatingAdmissionWebhook": true, "MutatingAdmissionWebhook": true,
}

// record calls the plugin and adds its step to the request's trace. The
// plugin's warnings are caught on their way to the request's warning
// recorder, so the step says which plugin warned.
func record(ctx context.Context, p plugin, phase string, a admission.Attributes, o admission.ObjectInterfaces, call func(context.Context, admission.Attributes) error) error {
	name := p.name
	t := From(ctx)
	if t == nil || !t.beginCall() {
		return call(ctx, a)
	}
	defer t.endCall()
	calls, callCtx := t.scratch(ctx)
	// Only the plugins that report through annotations get attributes
	// that keep them.
	var annotated *annotatedAttributes
	attrs := a
	if runsManyPolicies[name] {
		annotated = &annotatedAttributes{Attributes: a}
		attrs = annotated
	}
	var before runtime.Object
	if p.patched != nil && phase == "mutating" && a.GetObject() != nil && p.patched(a, o) {
		before = a.GetObject().DeepCopyObject()
	}
	start := time.Now()
	err := call(callCtx, attrs)
	step := Step{Plugin: name, Phase: phase, Verdict: VerdictAllow, Duration: time.Since(start), Warnings: calls.warnings.take(), Policies: calls.policies.take(), calls: calls.policies.takeCalls()}
	if rc := a.GetReinvocationContext(); phase == "mutating" && rc != nil && rc.IsReinvoke() {
		step.Reinvocation = true
	}
	if before != nil {
		// Measured apart from the plugin's own duration.
		if patch, perr := objectPatch(o, a.GetKind().GroupVersion(), before, a.GetObject()); perr == nil {
			step.Patch = patch
		} else {
			step.Annotations = setKey(step.Annotations, "gatehouse.dev/patch-error", perr.Error())
		}
	}
	if annotated != nil {
		fromAnnotations, rest := policiesFromAnnotations(annotated.taken())
		step.Policies = append(step.Policies, fromAnnotations...)
		for k, v := range rest {
			step.Annotations = setKey(step.Annotations, k, v)
		}
	}
	switch {
	case err != nil && isDenial(err):
		step.Verdict, step.Message = VerdictDeny, err.Error()
	case err != nil:
		step.Verdict, step.Message = VerdictError, err.Error()
	case len(step.Warnings) > 0:
		step.Verdict = VerdictWarn
	}
	if runsManyPolicies[name] {
		// Upstream's plugins that run many policies or webhooks report
		// nothing per policy; what spoke is named in their words.
		if err != nil {
			step.Policies = append(step.Policies, Denials(err.Error())...)
		}
		for _, p := range Warnings(step.Warnings) {
			if p.Kind != KindWarning {
				step.Policies = append(step.Policies, p)
			}
		}
	}
	if p.explainer != nil {
		// A copy of its own, so that the step of the plugins without an
		// explainer stays on the stack.
		explained := step
		p.explainer.Explain(ctx, a, o, &explained)
		step = explained
	}
	step.calls = nil
	t.addStep(step, p.index, a)
	return err
}

// isDenial tells a plugin's refusal (forbidden, invalid) from its failure.
func isDenial(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	code := status.Status().Code
	return code == 403 || code == 422 || code == 400
}

// stepWarnings passes warnings on to the request's recorder and keeps a
// copy for the step.
type stepWarnings struct {
	ctx   context.Context
	mu    sync.Mutex
	items []string
}

func (w *stepWarnings) AddWarning(agent, text string) {
	w.mu.Lock()
	w.items = append(w.items, text)
	w.mu.Unlock()
	warning.AddWarning(w.ctx, agent, text)
}

// take returns the warnings caught and empties the list.
func (w *stepWarnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.items) == 0 {
		return nil
	}
	out := slices.Clone(w.items)
	clear(w.items)
	w.items = w.items[:0]
	return out
}
