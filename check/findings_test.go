package check

import (
	"reflect"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDenialFindings(t *testing.T) {
	tests := []struct {
		msg  string
		want []Finding
	}{
		{`deployments.apps "big" is forbidden: ValidatingAdmissionPolicy 'max' with binding 'max-b' denied request: too many`,
			[]Finding{{Kind: "ValidatingAdmissionPolicy", Name: "max", Binding: "max-b", Action: "deny", Message: "too many"}}},
		{`pods "p" is forbidden: ValidatingAdmissionPolicy 'p' denied request: no`,
			[]Finding{{Kind: "ValidatingAdmissionPolicy", Name: "p", Action: "deny", Message: "no"}}},
		{"admission webhook \"validation.gatekeeper.sh\" denied the request: [a] one\n[b] two",
			[]Finding{{Kind: "Constraint", Name: "a", Action: "deny", Message: "one"}, {Kind: "Constraint", Name: "b", Action: "deny", Message: "two"}}},
		{`admission webhook "hook.example.com" denied the request: not today`,
			[]Finding{{Kind: "Webhook", Name: "hook.example.com", Action: "deny", Message: "not today"}}},
		{`admission webhook "hook.example.com" denied the request without explanation`,
			[]Finding{{Kind: "Webhook", Name: "hook.example.com", Action: "deny", Message: "(without explanation)"}}},
		{`Internal error occurred: failed calling webhook "hook.example.com": Post "https://x": dial tcp: connection refused`,
			[]Finding{{Kind: "Webhook", Name: "hook.example.com", Action: "error", Message: `Post "https://x": dial tcp: connection refused`}}},
		{`pods "p" is forbidden: violates PodSecurity "restricted:latest": privileged`,
			[]Finding{{Kind: "Admission", Name: "PodSecurity restricted:latest", Action: "deny", Message: "privileged"}}},
		{`pods "p" is forbidden: exceeded quota: q`,
			[]Finding{{Kind: "Admission", Action: "deny", Message: "exceeded quota: q"}}},
	}
	for _, tt := range tests {
		if got := denialFindings(tt.msg); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("denialFindings(%q)\n got %+v\nwant %+v", tt.msg, got, tt.want)
		}
	}
}

func TestWarningFindings(t *testing.T) {
	got := warningFindings([]string{
		"Validation failed for ValidatingAdmissionPolicy 'p' with binding 'b': careful",
		`[team] you must provide labels: {"team"}`,
		`would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false`,
		"something else",
	})
	want := []Finding{
		{Kind: "ValidatingAdmissionPolicy", Name: "p", Binding: "b", Action: "warn", Message: "careful"},
		{Kind: "Constraint", Name: "team", Action: "warn", Message: `you must provide labels: {"team"}`},
		{Kind: "Admission", Name: "PodSecurity restricted:latest", Action: "warn", Message: "allowPrivilegeEscalation != false"},
		{Kind: "Warning", Action: "warn", Message: "something else"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("warningFindings\n got %+v\nwant %+v", got, want)
	}
}

func TestSummary(t *testing.T) {
	s := Summarize([]Result{{Verdict: Allowed}, {Verdict: Warned}, {Verdict: Denied}, {Verdict: Invalid}, {Verdict: Error}})
	if s.Passed() {
		t.Error("a summary with denials passed")
	}
	if got, want := s.String(), "5 objects: 1 allowed, 1 warned, 1 denied, 1 invalid, 1 not checked"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if !Summarize([]Result{{Verdict: Allowed}, {Verdict: Warned}}).Passed() {
		t.Error("allowed and warned did not pass")
	}
}

// TestClassifyWebhookErrorResponse: a webhook that answers allowed: false
// with status 500 and no reason (Gatekeeper's mutation webhook when
// mutation fails) refused the request; a 500 of the API server's own did
// not.
func TestClassifyWebhookErrorResponse(t *testing.T) {
	refused := &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: 500,
		Message: `admission webhook "mutation.gatekeeper.sh" denied the request: failed to resolve external data placeholders: no`}}
	var res Result
	classify(&res, refused)
	if res.Verdict != Denied || len(res.Findings) != 1 || res.Findings[0].Name != "mutation.gatekeeper.sh" {
		t.Errorf("a webhook's error response: %s %+v, want Denied by mutation.gatekeeper.sh", res.Verdict, res.Findings)
	}
	res = Result{}
	classify(&res, &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: 500, Message: "etcdserver: request timed out"}})
	if res.Verdict != Error {
		t.Errorf("a server error: %s, want Error", res.Verdict)
	}
}
