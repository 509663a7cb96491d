package trace

import (
	"context"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apiserver/pkg/admission/plugin/webhook"
)

type staticSource []webhook.WebhookAccessor

func (s staticSource) Webhooks() []webhook.WebhookAccessor { return s }
func (s staticSource) HasSynced() bool                     { return true }

func mutatingHook(name string, fp admissionregistrationv1.FailurePolicyType) webhook.WebhookAccessor {
	return webhook.NewMutatingWebhookAccessor(name, "cfg", &admissionregistrationv1.MutatingWebhook{Name: name, FailurePolicy: &fp})
}

func TestMergeCalls(t *testing.T) {
	x := &WebhookExplainer{source: staticSource{
		mutatingHook("ignore", admissionregistrationv1.Ignore),
		mutatingHook("fail", admissionregistrationv1.Fail),
		mutatingHook("patcher", admissionregistrationv1.Ignore),
		mutatingHook("malformed", admissionregistrationv1.Ignore),
	}}
	step := &Step{Phase: "mutating", Verdict: VerdictError, Message: "Internal error occurred: remove operation does not apply: doc is missing path",
		Policies: []Policy{{Kind: KindWebhook, Name: "ignore", Verdict: VerdictFailedOpen, Reason: "the call failed; failurePolicy Ignore let the request through"}},
		calls: []WebhookCall{
			{Configuration: "cfg", Webhook: "ignore", Exchange: 1, Fault: "timeout", Duration: 2 * time.Second, Failed: true, TimedOut: true},
			{Configuration: "cfg", Webhook: "fail", Exchange: 2, Fault: "status=500", Failed: true},
			{Configuration: "cfg", Webhook: "malformed", Exchange: 3, Problem: "received invalid webhook response: expected response.uid=\"a\", got \"b\""},
			{Configuration: "cfg", Webhook: "patcher", Exchange: 4, Fault: "bad-patch"},
		}}
	x.mergeCalls(context.Background(), step)
	want := map[string]struct {
		verdict, reason string
		exchange        uint64
	}{
		"ignore":    {VerdictFailedOpen, "the call timed out after 2s; failurePolicy Ignore let the request through", 1},
		"fail":      {VerdictError, "the call failed; failurePolicy Fail refused the request", 2},
		"malformed": {VerdictFailedOpen, `its answer was refused: received invalid webhook response: expected response.uid="a", got "b"; failurePolicy Ignore let the request through`, 3},
		"patcher":   {VerdictError, "refused although failurePolicy is Ignore", 4},
	}
	if len(step.Policies) != len(want) {
		t.Fatalf("%d policies, want %d: %+v", len(step.Policies), len(want), step.Policies)
	}
	for _, p := range step.Policies {
		w := want[p.Name]
		if p.Verdict != w.verdict || !strings.Contains(p.Reason, w.reason) || p.Exchange != w.exchange || p.Configuration != "cfg" {
			t.Errorf("%s: %s %q (exchange %d), want %s %q (exchange %d)", p.Name, p.Verdict, p.Reason, p.Exchange, w.verdict, w.reason, w.exchange)
		}
	}
	if p := step.Policies[0]; p.Fault != "timeout" || p.CallDuration != 2*time.Second {
		t.Errorf("fault %q, duration %s", p.Fault, p.CallDuration)
	}
}

func TestMergeCallsPastTheDeadline(t *testing.T) {
	x := &WebhookExplainer{source: staticSource{
		mutatingHook("a", admissionregistrationv1.Ignore), mutatingHook("b", admissionregistrationv1.Ignore), mutatingHook("c", admissionregistrationv1.Ignore),
	}}
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	step := &Step{Phase: "mutating", Verdict: VerdictError, Message: "request did not complete within requested timeout", calls: []WebhookCall{
		{Configuration: "cfg", Webhook: "a", Duration: 2 * time.Second, Failed: true, TimedOut: true},
		{Configuration: "cfg", Webhook: "b", Duration: 2 * time.Second, Failed: true, TimedOut: true},
		{Configuration: "cfg", Webhook: "c", Duration: time.Second, Failed: true, TimedOut: true},
	}}
	step.Policies = []Policy{{Kind: KindWebhook, Name: "d", Configuration: "cfg", Verdict: VerdictAllow, Reason: "called; allowed"}}
	x.mergeCalls(ctx, step)
	if p := step.Policies[0]; p.Verdict != VerdictSkip || !strings.Contains(p.Reason, "deadline") {
		t.Errorf("a webhook after the deadline: %s %q, want skipped as not called", p.Verdict, p.Reason)
	}
	for _, want := range []string{"128162", "a 2s", "b 2s", "c 1s", "failurePolicy Ignore", "request did not complete"} {
		if !strings.Contains(step.Message, want) {
			t.Errorf("message %q lacks %q", step.Message, want)
		}
	}
	// Before the deadline the same calls say nothing of it.
	step2 := &Step{Phase: "mutating", Verdict: VerdictAllow, calls: step.calls}
	x.mergeCalls(context.Background(), step2)
	if strings.Contains(step2.Message, "128162") {
		t.Errorf("message %q without a passed deadline", step2.Message)
	}
}
