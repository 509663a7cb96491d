// Package trace records every admission decision step by step: for each
// write request, who sent it and what, then each admission plugin that
// handled it in chain order with its verdict, message, warnings and
// duration, then the outcome.
//
// Two hooks, both upstream's own extension points:
//   - Record, an HTTP filter placed innermost in the API server's handler
//     chain (after authentication and authorization), opens a Trace for
//     each write request and puts it in the request's context; when the
//     request is answered it closes the trace with the response code and
//     hands it to the Recorder.
//   - Decorator, an admission.Decorator (the API server wraps every plugin
//     of the chain with its decorators, as it does for its own metrics),
//     records each plugin's call into the Trace of the request's context.
//
// Recorder keeps the newest traces in a bounded ring and lets readers
// follow new ones.
//
// Usage, as the control plane wires it:
//
//	rec := trace.NewRecorder(trace.DefaultCapacity)
//	admissionOptions.Decorators = append(admissionOptions.Decorators, trace.Decorator())
//	genericConfig.BuildHandlerChainFunc = trace.WrapHandlerChain(genericConfig.BuildHandlerChainFunc, rec)
//	mux.Handle(trace.Path, trace.Handler(rec))
package trace

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"time"

	"k8s.io/apiserver/pkg/admission"
)

// Trace is one write request and what the admission chain made of it.
type Trace struct {
	ID          uint64    `json:"id"`
	Time        time.Time `json:"time"`
	User        string    `json:"user"`
	Groups      []string  `json:"groups,omitempty"`
	Verb        string    `json:"verb"`
	Group       string    `json:"group,omitempty"`
	Version     string    `json:"version,omitempty"`
	Resource    string    `json:"resource"`
	Subresource string    `json:"subresource,omitempty"`
	Namespace   string    `json:"namespace,omitempty"`
	Name        string    `json:"name,omitempty"`
	// Operation and DryRun are as admission saw them.
	Operation string `json:"operation,omitempty"`
	DryRun    bool   `json:"dryRun,omitempty"`
	Steps     []Step `json:"steps"`
	// Outcome is allowed, denied (by an admission step) or failed (refused
	// for another reason, such as validation, after admission or
	// without it); Code is the HTTP status of the answer.
	Outcome string `json:"outcome"`
	Code    int    `json:"code"`
	// Message is the denying step's message.
	Message string `json:"message,omitempty"`
	// Admission is the time spent in admission steps; Duration the whole
	// request's.
	Admission time.Duration `json:"admissionNanos"`
	Duration  time.Duration `json:"durationNanos"`
	// Tag is the request's TagHeader, by which a client (gatehouse
	// check) finds the trace of a request it sent.
	Tag string `json:"tag,omitempty"`

	mu sync.Mutex
	// Recorded steps, kept packed (see packedStep); Steps is filled for
	// readers by Copy.
	packed []packedStep
	rich   []Step
	// calls is what the plugin call under way reports into.
	calls *callScratch
	// inflight counts plugin calls under way; answered is set once the
	// request is answered, finished once the trace is kept (see finish).
	inflight           int
	answered, finished bool
	recorder           *Recorder
}

// Step is one admission plugin's call.
type Step struct {
	Plugin string `json:"plugin"`
	// Phase is mutating or validating.
	Phase string `json:"phase"`
	// Reinvocation marks a mutating plugin's second call, made because a
	// later plugin changed the object (upstream's reinvocation).
	Reinvocation bool `json:"reinvocation,omitempty"`
	// Verdict is allow, warn (allowed with warnings), deny or error.
	Verdict  string        `json:"verdict"`
	Message  string        `json:"message,omitempty"`
	Warnings []string      `json:"warnings,omitempty"`
	Duration time.Duration `json:"durationNanos"`
	// Patch is the JSON Patch (RFC 6902) of what the step changed in the
	// object, for the plugins that run user policies that mutate
	// (MutatingAdmissionPolicy, Gatekeeper's mutators, mutating webhooks).
	Patch json.RawMessage `json:"patch,omitempty"`
	// Annotations are the audit annotations the plugin added (webhook
	// and policy auditAnnotations, upstream's own bookkeeping).
	Annotations map[string]string `json:"annotations,omitempty"`
	// Policies say, for a plugin that runs many policies, what each did:
	// reported by the plugin itself (see AddPolicy).
	Policies []Policy `json:"policies,omitempty"`

	// calls are the webhook calls of the step, for its explainer.
	calls []WebhookCall
	// packedPolicies are Policies as the ring keeps them (see packPolicies).
	packedPolicies []packedPolicy
}

// Policy is one policy a plugin considered for a request: an admission
// policy's binding, a webhook, a constraint, a mutator.
type Policy struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Binding is an admission policy's binding; Configuration a
	// webhook's configuration.
	Binding       string `json:"binding,omitempty"`
	Configuration string `json:"configuration,omitempty"`
	// Verdict is skip (not matched), allow, warn, deny, audit, dryrun,
	// patch, failed-open or error.
	Verdict string `json:"verdict"`
	// Reason says why a policy was skipped; Message what it reported.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Expression is the CEL expression that failed (its index among the
	// policy's validations in ExpressionIndex), or the matchCondition
	// that excluded the request.
	Expression      string `json:"expression,omitempty"`
	ExpressionIndex *int   `json:"expressionIndex,omitempty"`
	// Patch is what this policy changed (a mutating webhook's patch).
	Patch json.RawMessage `json:"patch,omitempty"`
	// For a called webhook: its call's exchange in the webhook log
	// (gatehouse webhook log), the fault applied, how long the call took,
	// and whether a recorded answer stood in for it.
	Exchange     uint64        `json:"exchange,omitempty"`
	Fault        string        `json:"fault,omitempty"`
	CallDuration time.Duration `json:"callDurationNanos,omitempty"`
	Stubbed      bool          `json:"stubbed,omitempty"`
}

// WebhookCall is one call of a webhook as the webhook kit's transport saw
// it (see package webhooks).
type WebhookCall struct {
	Kind, Configuration, Webhook string
	Exchange                     uint64
	Fault                        string
	Duration                     time.Duration
	// Failed: no answer, or an HTTP error; TimedOut: out of time.
	Failed, TimedOut, Stubbed bool
	// Problem is upstream's reason for refusing an answer that came
	// (bad JSON, wrong apiVersion or kind, uid mismatch, ...).
	Problem string
}

// AddWebhookCall reports a webhook call into the step of the plugin call
// whose context ctx is (a no-op without a trace).
func AddWebhookCall(ctx context.Context, c WebhookCall) {
	if col, ok := ctx.Value(policiesKey{}).(*policyCollector); ok {
		col.mu.Lock()
		// As AddPolicy: only into the trace of ctx.
		if col.scratch.owner != nil && col.scratch.owner == From(ctx) {
			col.calls = append(col.calls, c)
		}
		col.mu.Unlock()
	}
}

// Policy verdicts beyond the step verdicts.
const (
	VerdictSkip   = "skip"
	VerdictDryRun = "dryrun"
	VerdictPatch  = "patch"
	// VerdictAudit is a failed validation whose binding only audits.
	VerdictAudit = "audit"
	// VerdictFailedOpen is a webhook whose call failed and whose
	// failurePolicy Ignore let the request through.
	VerdictFailedOpen = "failed-open"
)

type policiesKey struct{}

// policyCollector gathers what one plugin call reports.
type policyCollector struct {
	mu      sync.Mutex
	items   []Policy
	calls   []WebhookCall
	scratch *callScratch
}

// AddPolicy reports what one policy did, into the step of the plugin call
// whose context ctx is. Without a trace it does nothing, so plugins call it
// unconditionally; Tracing says whether it is worth building the report.
func AddPolicy(ctx context.Context, p Policy) {
	if c, ok := ctx.Value(policiesKey{}).(*policyCollector); ok {
		c.mu.Lock()
		// The collector is reused once its trace is closed: a plugin's
		// goroutine that outlived its request must not report into
		// another request's trace.
		if c.scratch.owner != nil && c.scratch.owner == From(ctx) {
			c.items = append(c.items, p)
		}
		c.mu.Unlock()
	}
}

// take returns what was reported and empties the collector. The slice is
// the collector's own buffer, valid until the trace's next plugin call:
// the step it goes into is packed (its policies copied out) before that.
func (c *policyCollector) take() []Policy {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.items) == 0 {
		return nil
	}
	out := c.items
	c.items = c.items[:0]
	return out
}

// takeCalls returns the webhook calls reported and empties the collector.
func (c *policyCollector) takeCalls() []WebhookCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.calls) == 0 {
		return nil
	}
	out := slices.Clone(c.calls)
	c.calls = c.calls[:0]
	return out
}

// Tracing reports whether the plugin call of ctx is traced.
func Tracing(ctx context.Context) bool {
	_, ok := ctx.Value(policiesKey{}).(*policyCollector)
	return ok
}

// Verdicts and outcomes.
const (
	VerdictAllow = "allow"
	VerdictWarn  = "warn"
	VerdictDeny  = "deny"
	VerdictError = "error"

	OutcomeAllowed = "allowed"
	OutcomeDenied  = "denied"
	OutcomeFailed  = "failed"
)

type contextKey struct{}

// WithTrace returns ctx carrying t.
func WithTrace(ctx context.Context, t *Trace) context.Context {
	return context.WithValue(ctx, contextKey{}, t)
}

// From returns the trace of ctx, or nil.
func From(ctx context.Context) *Trace {
	t, _ := ctx.Value(contextKey{}).(*Trace)
	return t
}

// addStep appends a step; the admission chain calls plugins one after
// another, but a trace is read concurrently by the recorder's readers only
// after it is closed, so the lock is for safety against plugins that run
// asynchronously.
func (t *Trace) addStep(s Step, plugin uint16, a admission.Attributes) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pack(s, plugin)
	t.Admission += s.Duration
	t.Operation, t.DryRun = string(a.GetOperation()), a.IsDryRun()
	// A create's URL has no name (or only generateName); admission knows it.
	if t.Name == "" {
		t.Name = a.GetName()
	}
	if s.Verdict == VerdictDeny || s.Verdict == VerdictError {
		t.Message = s.Message
	}
}

// Copy returns a copy that shares nothing mutable with t.
func (t *Trace) Copy() *Trace {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := &Trace{
		ID: t.ID, Time: t.Time, User: t.User, Groups: append([]string(nil), t.Groups...),
		Verb: t.Verb, Group: t.Group, Version: t.Version, Resource: t.Resource, Subresource: t.Subresource,
		Namespace: t.Namespace, Name: t.Name, Operation: t.Operation, DryRun: t.DryRun,
		Outcome: t.Outcome, Code: t.Code, Message: t.Message, Admission: t.Admission, Duration: t.Duration, Tag: t.Tag,
	}
	steps := t.steps()
	c.Steps = make([]Step, len(steps))
	for i, s := range steps {
		s.Warnings = append([]string(nil), s.Warnings...)
		s.Policies = append([]Policy(nil), s.Policies...)
		s.Annotations = maps.Clone(s.Annotations)
		c.Steps[i] = s
	}
	return c
}
