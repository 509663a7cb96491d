package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
)

type tracedStep struct {
	Plugin, Phase, Verdict, Message string
	Reinvocation                    bool
	Warnings                        []string
	Patch                           json.RawMessage
	Policies                        []tracedPolicy
}

type tracedPolicy struct {
	Kind, Name, Binding, Configuration, Verdict, Reason, Message, Expression string
	Patch                                                                    json.RawMessage
}

type tracedRequest struct {
	ID                                    uint64
	User, Verb, Resource, Namespace, Name string
	Operation, Outcome, Message           string
	DryRun                                bool
	Steps                                 []tracedStep
}

// TestAdmissionTrace sends requests through a MutatingAdmissionPolicy, a
// ValidatingAdmissionPolicy that denies, Gatekeeper constraints and
// mutators, and reads back each step through gatehouse trace.
func TestAdmissionTrace(t *testing.T) {
	policies, err := filepath.Abs("testdata/check/policies")
	if err != nil {
		t.Fatal(err)
	}
	traceFile := filepath.Join(t.TempDir(), "traces.jsonl")
	inst := startGatehouse(t, "--policies", policies, "--trace-file", traceFile)
	traces := func(t *testing.T, args ...string) []tracedRequest {
		t.Helper()
		stdout, stderr, code := runGatehouse(t, time.Minute, append([]string{"trace", "--data-dir", inst.dataDir, "-o", "json"}, args...)...)
		if code != 0 {
			t.Fatalf("gatehouse trace: exit %d\n%s", code, stderr)
		}
		var doc struct{ Traces []tracedRequest }
		if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
			t.Fatalf("gatehouse trace -o json: %v\n%s", err, stdout)
		}
		return doc.Traces
	}
	// The policies are in force once a denial comes back.
	poll(t, 30*time.Second, func() error {
		_, stderr, err := inst.kubectl(t, "create", "deployment", "big", "--image=registry.example/app:1", "--replicas=9", "--dry-run=server")
		if err == nil || !strings.Contains(stderr, "max-replicas") {
			return fmt.Errorf("not denied yet: %v %s", err, stderr)
		}
		return nil
	})

	t.Run("a denied dry run: every step in order, the denying one last", func(t *testing.T) {
		got := traces(t, "--name", "big", "--outcome", "denied", "--limit", "1")
		if len(got) != 1 {
			t.Fatalf("traces for big: %+v", got)
		}
		tr := got[0]
		if !tr.DryRun || tr.Operation != "CREATE" || tr.Resource != "deployments" || tr.Namespace != "default" || !strings.Contains(tr.Message, "replicas must be at most 5, not 9") {
			t.Errorf("trace = %+v", tr)
		}
		var order []string
		for _, s := range tr.Steps {
			order = append(order, s.Phase+" "+s.Plugin)
		}
		want := []string{"mutating MutatingAdmissionPolicy", "mutating GatekeeperMutation", "mutating MutatingAdmissionWebhook", "validating ValidatingAdmissionPolicy"}
		last := -1
		for _, w := range want {
			i := slices.Index(order, w)
			if i <= last {
				t.Errorf("%s at %d, want after %d in %v", w, i, last, order)
			}
			last = i
		}
		final := tr.Steps[len(tr.Steps)-1]
		if final.Plugin != "ValidatingAdmissionPolicy" || final.Verdict != "deny" {
			t.Errorf("last step = %+v, want ValidatingAdmissionPolicy deny (validation stops there)", final)
		}
		if slices.Contains(order, "validating GatekeeperConstraints") {
			t.Error("a step after the denial was recorded")
		}
		// Inside upstream's step, the policy and binding that denied, and
		// the other binding with why it did not apply.
		if ps := final.Policies; len(ps) != 2 || ps[0].Name != "max-replicas" || ps[0].Verdict != "deny" ||
			ps[1].Name != "no-latest" || ps[1].Verdict != "skip" || ps[1].Reason != "policy matchConstraints: resourceRules do not cover CREATE deployments.apps" {
			t.Errorf("policies of the denying step = %+v, want max-replicas deny, no-latest skipped by its rules", ps)
		}
	})

	t.Run("a warning is the step of the plugin that warned", func(t *testing.T) {
		inst.mustKubectlIn(t, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: traced\n  labels: {owner: e2e}\n", "apply", "-f", "-")
		inst.mustKubectlIn(t, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: warned\n  namespace: traced\nspec:\n  containers: [{name: c, image: registry.example/app:1}]\n", "create", "--dry-run=server", "-f", "-")
		got := traces(t, "--namespace", "traced", "--name", "warned", "--verdict", "warn")
		if len(got) != 1 {
			t.Fatalf("traces: %+v", got)
		}
		var warned []string
		for _, s := range got[0].Steps {
			if s.Verdict == "warn" {
				warned = append(warned, s.Plugin+": "+strings.Join(s.Warnings, ";"))
			}
		}
		if len(warned) != 1 || !strings.Contains(warned[0], `GatekeeperConstraints: [pods-should-have-team] you must provide labels: {"team"}`) {
			t.Errorf("warning steps = %q", warned)
		}
		// Inside the step, each constraint: the one that warned, and the
		// one whose match skipped the pod, with why.
		var policies []string
		for _, st := range got[0].Steps {
			if st.Plugin == "GatekeeperConstraints" {
				for _, p := range st.Policies {
					policies = append(policies, p.Verdict+" "+p.Name+" "+p.Reason)
				}
			}
		}
		for _, want := range []string{"warn pods-should-have-team", `skip ns-must-have-owner kinds: ""/Pod not in`} {
			if !slices.ContainsFunc(policies, func(p string) bool { return strings.HasPrefix(p, want) }) {
				t.Errorf("constraint details %q lack %q", policies, want)
			}
		}
		// Inside upstream's ValidatingAdmissionPolicy step, each binding
		// and why it did not apply.
		var bindings []string
		for _, st := range got[0].Steps {
			if st.Plugin == "ValidatingAdmissionPolicy" || st.Plugin == "MutatingAdmissionPolicy" {
				for _, p := range st.Policies {
					bindings = append(bindings, p.Verdict+" "+p.Name+": "+p.Reason)
				}
			}
		}
		for _, want := range []string{
			"skip max-replicas: policy matchConstraints: resourceRules do not cover CREATE pods",
			`skip no-latest: binding matchResources: namespaceSelector "env=prod" does not select namespace "traced"`,
			"skip managed-label: policy matchConstraints: resourceRules do not cover CREATE pods",
		} {
			if !slices.Contains(bindings, want) {
				t.Errorf("policy details %q lack %q", bindings, want)
			}
		}
		if got[0].Outcome != "allowed" {
			t.Errorf("outcome %s, want allowed", got[0].Outcome)
		}
	})

	t.Run("system users are left out unless asked for", func(t *testing.T) {
		for _, tr := range traces(t, "--limit", "0") {
			if strings.HasPrefix(tr.User, "system:") {
				t.Fatalf("a system user's request is listed by default: %+v", tr)
			}
		}
		if len(traces(t, "--limit", "0", "--system")) == 0 {
			t.Error("--system lists nothing")
		}
	})

	t.Run("follow prints new requests as they come", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, gatehouseBin, "trace", "--data-dir", inst.dataDir, "-f", "-o", "json", "--limit", "1", "--namespace", "traced", "--name", "followed")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); _ = cmd.Wait() }()
		time.Sleep(500 * time.Millisecond) // let it connect
		inst.mustKubectlIn(t, "", "create", "configmap", "followed", "-n", "traced", "--dry-run=server")
		lines := make(chan string, 1)
		go func() {
			s := bufio.NewScanner(stdout)
			if s.Scan() {
				lines <- s.Text()
			}
		}()
		select {
		case line := <-lines:
			var tr tracedRequest
			if err := json.Unmarshal([]byte(line), &tr); err != nil || tr.Name != "followed" || !tr.DryRun {
				t.Errorf("followed trace %q (%v)", line, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("gatehouse trace -f printed nothing for a new request")
		}
	})

	t.Run("metrics per constraint and template next to upstream's", func(t *testing.T) {
		out := inst.mustKubectlIn(t, "", "get", "--raw", "/metrics")
		for _, want := range []string{
			`gatehouse_constraint_violations_total{action="warn",constraint="pods-should-have-team",kind="K8sRequiredLabels"}`,
			`gatehouse_constraint_template_evaluation_duration_seconds_count{result="violation",template="k8srequiredlabels"}`,
			`gatehouse_admission_policy_decisions_total{binding="max-replicas",kind="ValidatingAdmissionPolicy",name="max-replicas",plugin="ValidatingAdmissionPolicy",verdict="deny"}`,
			`gatehouse_admission_policy_decisions_total{binding="no-latest-in-prod",kind="ValidatingAdmissionPolicy",name="no-latest",plugin="ValidatingAdmissionPolicy",verdict="skip"}`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("/metrics has no %s", want)
			}
		}
		// Upstream's own, per ValidatingAdmissionPolicy.
		if !slices.ContainsFunc(strings.Split(out, "\n"), func(l string) bool {
			return strings.HasPrefix(l, "apiserver_validating_admission_policy_check_total{") && strings.Contains(l, `policy="max-replicas"`)
		}) {
			t.Error("/metrics has no apiserver_validating_admission_policy_check_total for max-replicas")
		}
	})

	t.Run("--trace-file has the traces as JSON lines", func(t *testing.T) {
		poll(t, 10*time.Second, func() error {
			data, err := os.ReadFile(traceFile)
			if err != nil {
				return err
			}
			for line := range strings.SplitSeq(strings.TrimSpace(string(data)), "\n") {
				var tr tracedRequest
				if err := json.Unmarshal([]byte(line), &tr); err != nil {
					return fmt.Errorf("line %q: %v", line, err)
				}
				if tr.Name == "big" && tr.Outcome == "denied" {
					return nil
				}
			}
			return fmt.Errorf("no trace of big in %d bytes", len(data))
		})
	})

	t.Run("table output", func(t *testing.T) {
		stdout, _, code := runGatehouse(t, time.Minute, "trace", "--data-dir", inst.dataDir, "--name", "big", "--limit", "1")
		if code != 0 || !strings.Contains(stdout, "DENIED") || !strings.Contains(stdout, "CREATE (dry run)") || !strings.Contains(stdout, "deny   validating  ValidatingAdmissionPolicy") {
			t.Errorf("exit %d:\n%s", code, stdout)
		}
	})

	t.Run("webhooks, admission policies and constraints, policy by policy", func(t *testing.T) {
		hook := startMutatingWebhook(t)
		inst.mustKubectlIn(t, fmt.Sprintf(`apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: e2e-trace-mutate}
webhooks:
- name: inject.e2e.gatehouse.dev
  clientConfig: {url: "%[1]s/mutate", caBundle: %[2]s}
  rules: [{apiGroups: [apps], apiVersions: [v1], operations: [CREATE], resources: [deployments]}]
  sideEffects: None
  admissionReviewVersions: [v1]
- name: selective.e2e.gatehouse.dev
  clientConfig: {url: "%[1]s/mutate", caBundle: %[2]s}
  objectSelector: {matchLabels: {tier: never}}
  rules: [{apiGroups: [apps], apiVersions: [v1], operations: [CREATE], resources: [deployments]}]
  sideEffects: None
  admissionReviewVersions: [v1]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: e2e-trace-validate}
webhooks:
- name: allowing.e2e.gatehouse.dev
  clientConfig: {url: "%[1]s/validate", caBundle: %[2]s}
  rules: [{apiGroups: [apps], apiVersions: [v1], operations: [CREATE], resources: [deployments]}]
  sideEffects: None
  admissionReviewVersions: [v1]
- name: conditioned.e2e.gatehouse.dev
  clientConfig: {url: "%[1]s/validate", caBundle: %[2]s}
  matchConditions: [{name: only-huge, expression: "object.spec.replicas > 100"}]
  rules: [{apiGroups: [apps], apiVersions: [v1], operations: [CREATE], resources: [deployments]}]
  sideEffects: None
  admissionReviewVersions: [v1]
`, hook.url, hook.caBundle), "apply", "-f", "-")
		poll(t, 30*time.Second, func() error {
			out, _, err := inst.kubectl(t, "create", "deployment", "hooked", "--image=registry.example/app:1", "--dry-run=server", "-o", "jsonpath={.metadata.labels.webhook-injected}")
			if err != nil || out != "yes" {
				return fmt.Errorf("webhook not in force yet: %q %v", out, err)
			}
			return nil
		})

		// Denied by a ValidatingAdmissionPolicy after both mutations.
		inst.kubectl(t, "create", "deployment", "hooked-big", "--image=registry.example/app:1", "--replicas=9", "--dry-run=server")
		denied := traces(t, "--name", "hooked-big", "--limit", "1")
		// Allowed: through every step, the validating webhooks and the
		// constraints included.
		inst.mustKubectlIn(t, "", "create", "deployment", "hooked-small", "--image=registry.example/app:1", "--replicas=2", "--dry-run=server")
		allowed := traces(t, "--name", "hooked-small", "--limit", "1")
		if len(denied) != 1 || len(allowed) != 1 {
			t.Fatalf("traces: denied %+v, allowed %+v", denied, allowed)
		}
		describe := func(tr tracedRequest) []string {
			var out []string
			for _, s := range tr.Steps {
				if !slices.Contains([]string{"MutatingAdmissionPolicy", "MutatingAdmissionWebhook", "ValidatingAdmissionPolicy", "ValidatingAdmissionWebhook", "GatekeeperConstraints"}, s.Plugin) {
					continue
				}
				if s.Reinvocation {
					continue // a second call: checked below
				}
				out = append(out, fmt.Sprintf("%s %s", s.Plugin, s.Verdict))
				for _, p := range s.Policies {
					line := fmt.Sprintf("  %s %s %s", p.Verdict, p.Kind, p.Name)
					if p.Reason != "" {
						line += ": " + p.Reason
					}
					if p.Expression != "" {
						line += " [" + p.Expression + "]"
					}
					if p.Patch != nil {
						var compact bytes.Buffer
						_ = json.Compact(&compact, p.Patch)
						line += " " + compact.String()
					}
					out = append(out, line)
				}
			}
			return out
		}
		wantDenied := []string{
			"MutatingAdmissionPolicy allow",
			`  patch MutatingAdmissionPolicy managed-label [{"op":"add","path":"/metadata/labels/example.com~1managed","value":"true"}]`,
			"MutatingAdmissionWebhook allow",
			`  patch Webhook inject.e2e.gatehouse.dev: called; changed the object [{"op":"add","path":"/metadata/labels/webhook-injected","value":"yes"}]`,
			`  skip Webhook selective.e2e.gatehouse.dev: objectSelector "tier=never" does not select the object`,
			"ValidatingAdmissionPolicy deny",
			"  deny ValidatingAdmissionPolicy max-replicas",
			"  skip ValidatingAdmissionPolicy no-latest: policy matchConstraints: resourceRules do not cover CREATE deployments.apps",
		}
		if got := describe(denied[0]); !slices.Equal(got, wantDenied) {
			t.Errorf("denied request, steps and policies:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantDenied, "\n"))
		}
		got := describe(allowed[0])
		for _, want := range []string{
			"ValidatingAdmissionPolicy allow",
			"  allow ValidatingAdmissionPolicy max-replicas",
			"ValidatingAdmissionWebhook allow",
			"  allow Webhook allowing.e2e.gatehouse.dev: called; allowed",
			`  skip Webhook conditioned.e2e.gatehouse.dev: matchCondition "only-huge" is false [object.spec.replicas > 100]`,
			"GatekeeperConstraints allow",
		} {
			if !slices.Contains(got, want) {
				t.Errorf("allowed request lacks %q in:\n%s", want, strings.Join(got, "\n"))
			}
		}
		if !slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, "  skip K8sRequiredLabels ") }) {
			t.Errorf("no constraint skipped with its reason in:\n%s", strings.Join(got, "\n"))
		}
		// The webhook's change made upstream call the mutating plugins
		// again; a webhook with reinvocationPolicy Never is not called.
		reinvoked := 0
		for _, s := range allowed[0].Steps {
			switch {
			case s.Plugin == "MutatingAdmissionWebhook" && !s.Reinvocation && !strings.Contains(string(s.Patch), "webhook-injected"):
				t.Errorf("the webhook step's patch = %s", s.Patch)
			case s.Plugin == "MutatingAdmissionWebhook" && s.Reinvocation:
				reinvoked++
				if !slices.ContainsFunc(s.Policies, func(p tracedPolicy) bool {
					return p.Name == "inject.e2e.gatehouse.dev" && p.Verdict == "skip" && strings.Contains(p.Reason, "reinvocationPolicy Never")
				}) {
					t.Errorf("reinvocation step's webhooks = %+v", s.Policies)
				}
			}
		}
		if reinvoked != 1 {
			t.Errorf("%d reinvocation steps of MutatingAdmissionWebhook, want 1", reinvoked)
		}
	})
}

// testWebhook is an HTTPS admission webhook on loopback: /mutate adds the
// label webhook-injected=yes, /validate allows.
type testWebhook struct{ url, caBundle string }

func startMutatingWebhook(t *testing.T) testWebhook {
	t.Helper()
	mux := http.NewServeMux()
	answer := func(w http.ResponseWriter, r *http.Request, patch string) {
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
		if patch != "" {
			pt := admissionv1.PatchTypeJSONPatch
			resp.Patch, resp.PatchType = []byte(patch), &pt
		}
		review.Request, review.Response = nil, resp
		_ = json.NewEncoder(w).Encode(review)
	}
	mux.HandleFunc("/mutate", func(w http.ResponseWriter, r *http.Request) {
		answer(w, r, `[{"op":"add","path":"/metadata/labels/webhook-injected","value":"yes"}]`)
	})
	mux.HandleFunc("/validate", func(w http.ResponseWriter, r *http.Request) { answer(w, r, "") })
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return testWebhook{url: srv.URL, caBundle: base64.StdEncoding.EncodeToString(ca)}
}
