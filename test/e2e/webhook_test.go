package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/gatehouse-dev/gatehouse/admission/trace"
	"github.com/gatehouse-dev/gatehouse/webhooks"
)

// testHook answers AdmissionReviews by path: allow, mutate (adds a
// label), and malformed answers (badjson, wrongversion, wrongkind,
// uidmismatch) and a 2 MiB one (huge).
func testHook(w http.ResponseWriter, r *http.Request) {
	var review struct {
		Request struct {
			UID string `json:"uid"`
		} `json:"request"`
	}
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp := map[string]any{"uid": review.Request.UID, "allowed": true}
	ar := map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp}
	switch strings.TrimPrefix(r.URL.Path, "/") {
	case "mutate":
		resp["patchType"] = "JSONPatch"
		resp["patch"] = base64.StdEncoding.EncodeToString([]byte(`[{"op":"add","path":"/metadata/labels","value":{"mutated":"yes"}}]`))
	case "badjson":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {`)
		return
	case "wrongversion":
		ar["apiVersion"] = "admission.k8s.io/v2"
	case "wrongkind":
		ar["kind"] = "ConfigMap"
	case "uidmismatch":
		resp["uid"] = "not-" + review.Request.UID
	case "huge":
		ar["padding"] = strings.Repeat("x", 2<<20)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(ar)
}

// hookSpec is one webhook of a configuration made by hookConfig.
type hookSpec struct {
	name, url, namespace, failurePolicy string
	timeout                             int
	service                             bool // a service reference instead of url
}

// hookConfig is a webhook configuration relying on caBundle injection, its
// webhooks on configmap creates in their namespace.
func hookConfig(kind, name string, annotations map[string]string, hooks ...hookSpec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: admissionregistration.k8s.io/v1\nkind: %s\nmetadata:\n  name: %s\n  annotations:\n", kind, name)
	if annotations == nil {
		annotations = map[string]string{"gatehouse.dev/inject-ca-bundle": "true"}
	}
	for k, v := range annotations {
		fmt.Fprintf(&b, "    %s: %q\n", k, v)
	}
	b.WriteString("webhooks:\n")
	for _, h := range hooks {
		client := fmt.Sprintf("url: %s", h.url)
		if h.service {
			client = "service: {namespace: default, name: hook, port: 443, path: /allow}"
		}
		fmt.Fprintf(&b, `  - name: %s
    clientConfig: {%s}
    rules: [{apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["configmaps"]}]
    namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: %s}}
    admissionReviewVersions: ["v1"]
    sideEffects: None
    failurePolicy: %s
    timeoutSeconds: %d
`, h.name, client, h.namespace, h.failurePolicy, h.timeout)
		if kind == "MutatingWebhookConfiguration" {
			b.WriteString("    reinvocationPolicy: Never\n")
		}
	}
	return b.String()
}

// webhookPolicy is the trace's entry for webhook in the newest trace of
// namespace/name.
func webhookPolicy(t *testing.T, inst *instance, namespace, name, webhook string) (trace.Policy, trace.Step) {
	t.Helper()
	var found trace.Policy
	var step trace.Step
	poll(t, 30*time.Second, func() error {
		stdout, stderr, code := runGatehouse(t, time.Minute, "trace", "--data-dir", inst.dataDir, "--namespace", namespace, "--name", name, "--limit", "1", "-o", "json")
		if code != 0 {
			return fmt.Errorf("gatehouse trace: exit %d: %s", code, stderr)
		}
		var list struct {
			Traces []trace.Trace `json:"traces"`
		}
		if err := json.Unmarshal([]byte(stdout), &list); err != nil {
			return err
		}
		if len(list.Traces) == 0 {
			return fmt.Errorf("no trace of %s/%s yet", namespace, name)
		}
		for _, s := range list.Traces[0].Steps {
			for _, p := range s.Policies {
				if p.Kind == trace.KindWebhook && p.Name == webhook && p.Exchange != 0 {
					found, step = p, s
					return nil
				}
			}
		}
		return fmt.Errorf("the trace of %s/%s has no call of %s: %s", namespace, name, webhook, stdout)
	})
	return found, step
}

func exchanges(t *testing.T, inst *instance, webhook string) []*webhooks.Exchange {
	t.Helper()
	stdout, stderr, code := runGatehouse(t, time.Minute, "webhook", "log", webhook, "--data-dir", inst.dataDir, "-o", "json")
	if code != 0 {
		t.Fatalf("gatehouse webhook log: exit %d: %s", code, stderr)
	}
	list, err := webhooks.ReadExchanges(strings.NewReader(stdout))
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// TestWebhookKit: certificates and caBundle injection, recording, faults,
// malformed and huge answers, the request deadline of several Ignore
// webhooks, the example webhook with replay, and check's stubs.
func TestWebhookKit(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "calls.jsonl")
	inst := startGatehouse(t, "--webhook-log-file", logFile)
	ctx := context.Background()

	// Certificates: from the Gatehouse CA, nothing written into its pki.
	certs := t.TempDir()
	pkiBefore, _ := os.ReadDir(filepath.Join(inst.dataDir, "pki"))
	if _, stderr, code := runGatehouse(t, time.Minute, "webhook", "certs", "--data-dir", inst.dataDir, "--ip", "127.0.0.1", "--host", "localhost", "--out", certs); code != 0 {
		t.Fatalf("webhook certs: exit %d: %s", code, stderr)
	}
	if info, err := os.Stat(filepath.Join(certs, "tls.key")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("tls.key: %v, mode %v; want 0600", err, info.Mode().Perm())
	}
	if _, stderr, code := runGatehouse(t, time.Minute, "webhook", "certs", "--data-dir", inst.dataDir, "--ip", "127.0.0.1", "--out", certs); code != 2 || !strings.Contains(stderr, "--force") {
		t.Errorf("certs over existing files: exit %d, %s; want 2 naming --force", code, stderr)
	}
	if pkiAfter, _ := os.ReadDir(filepath.Join(inst.dataDir, "pki")); len(pkiAfter) != len(pkiBefore) {
		t.Errorf("webhook certs wrote into the data dir's pki: %d entries, was %d", len(pkiAfter), len(pkiBefore))
	}
	caPEM, err := os.ReadFile(filepath.Join(certs, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}

	// The test's HTTPS webhook server, with that certificate.
	pair, err := tls.LoadX509KeyPair(filepath.Join(certs, "tls.crt"), filepath.Join(certs, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(testHook))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	defer srv.Close()
	base := srv.URL // https://127.0.0.1:PORT

	namespaces := []string{"inject", "fault-fail", "fault-ignore", "annotated", "malformed-fail", "malformed-ignore", "huge", "deadline"}
	for _, ns := range namespaces {
		if _, err := inst.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create := func(ns, name string) (string, error) {
		stdout, stderr, err := inst.kubectl(t, "create", "configmap", name, "-n", ns)
		return stdout + stderr, err
	}
	// Configurations take effect once the API server's informers see them.
	createWhenCalled := func(ns, prefix, webhook string) {
		t.Helper()
		i := 0
		poll(t, 30*time.Second, func() error {
			i++
			create(ns, fmt.Sprintf("%s-%d", prefix, i))
			for _, e := range exchanges(t, inst, webhook) {
				if e.Webhook == webhook {
					return nil
				}
			}
			return fmt.Errorf("%s not called yet", webhook)
		})
	}

	t.Run("injection", func(t *testing.T) {
		inst.mustKubectlIn(t, hookConfig("ValidatingWebhookConfiguration", "inject", nil,
			hookSpec{name: "url.gatehouse.test", url: base + "/allow", namespace: "inject", failurePolicy: "Fail", timeout: 5},
			hookSpec{name: "service.gatehouse.test", namespace: "no-such-namespace", failurePolicy: "Fail", timeout: 5, service: true},
		), "apply", "-f", "-")
		cfg, err := inst.client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "inject", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range cfg.Webhooks {
			if !bytes.Equal(w.ClientConfig.CABundle, caPEM) {
				t.Errorf("%s: caBundle not the Gatehouse CA (%d bytes)", w.Name, len(w.ClientConfig.CABundle))
			}
		}
		// A mutating configuration too.
		inst.mustKubectlIn(t, hookConfig("MutatingWebhookConfiguration", "inject-mutating", nil,
			hookSpec{name: "mutate.gatehouse.test", url: base + "/mutate", namespace: "inject", failurePolicy: "Fail", timeout: 5}), "apply", "-f", "-")
		m, err := inst.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "inject-mutating", metav1.GetOptions{})
		if err != nil || !bytes.Equal(m.Webhooks[0].ClientConfig.CABundle, caPEM) {
			t.Errorf("mutating configuration: %v, caBundle not injected", err)
		}
		// The injected CA verifies the server: the call goes through.
		createWhenCalled("inject", "injected", "url.gatehouse.test")
		_, stderr, err := inst.kubectlIn(t, hookConfig("ValidatingWebhookConfiguration", "bad-inject", map[string]string{"gatehouse.dev/inject-ca-bundle": "yes"},
			hookSpec{name: "x.gatehouse.test", url: base + "/allow", namespace: "inject", failurePolicy: "Fail", timeout: 5}), "apply", "-f", "-")
		if err == nil || !strings.Contains(stderr, "gatehouse.dev/inject-ca-bundle") {
			t.Errorf("inject-ca-bundle: yes: %v, %s; want a refusal naming the annotation", err, stderr)
		}
	})

	t.Run("recording", func(t *testing.T) {
		if out, err := create("inject", "recorded"); err != nil {
			t.Fatalf("create: %v: %s", err, out)
		}
		var e *webhooks.Exchange
		for _, x := range exchanges(t, inst, "url.gatehouse.test") {
			if strings.Contains(string(x.Request), `"name":"recorded"`) {
				e = x
			}
		}
		if e == nil {
			t.Fatal("no recorded call for configmap recorded")
		}
		var sent, answered struct {
			Kind     string                `json:"kind"`
			Request  *struct{ UID string } `json:"request"`
			Response *struct{ UID string } `json:"response"`
		}
		if json.Unmarshal(e.Request, &sent) != nil || json.Unmarshal(e.Response, &answered) != nil ||
			sent.Kind != "AdmissionReview" || answered.Kind != "AdmissionReview" || sent.Request == nil || answered.Response == nil {
			t.Fatalf("recorded request %s, response %s: want both AdmissionReviews", e.Request, e.Response)
		}
		if sent.Request.UID == "" || sent.Request.UID != e.UID || answered.Response.UID != e.UID || e.Configuration != "inject" || e.StatusCode != 200 {
			t.Errorf("uid %q / %q / %q, configuration %q, status %d", e.UID, sent.Request.UID, answered.Response.UID, e.Configuration, e.StatusCode)
		}
		p, _ := webhookPolicy(t, inst, "inject", "recorded", "url.gatehouse.test")
		if p.Exchange != e.ID {
			t.Errorf("the trace names call %d, the log %d", p.Exchange, e.ID)
		}
		poll(t, 10*time.Second, func() error {
			data, _ := os.ReadFile(logFile)
			if !strings.Contains(string(data), e.UID) {
				return fmt.Errorf("--webhook-log-file lacks uid %s", e.UID)
			}
			return nil
		})
		stdout, _, code := runGatehouse(t, time.Minute, "webhook", "log", "url.gatehouse.test", "--data-dir", inst.dataDir)
		if code != 0 || !strings.Contains(stdout, e.UID) || !strings.Contains(stdout, "allowed") {
			t.Errorf("webhook log table:\n%s", stdout)
		}
	})

	t.Run("faults", func(t *testing.T) {
		for _, fp := range []string{"Fail", "Ignore"} {
			ns := "fault-" + strings.ToLower(fp)
			inst.mustKubectlIn(t, hookConfig("MutatingWebhookConfiguration", ns, nil,
				hookSpec{name: ns + ".gatehouse.test", url: base + "/mutate", namespace: ns, failurePolicy: fp, timeout: 1}), "apply", "-f", "-")
			createWhenCalled(ns, "warmup", ns+".gatehouse.test")
		}
		for _, tc := range []struct {
			name  string
			flags []string
			fault string
			call  string // the trace's words for the call
		}{
			{"status", []string{"--status", "500"}, "status=500", "the call failed"},
			{"timeout", []string{"--timeout"}, "timeout", "the call timed out"},
			{"latency", []string{"--latency", "3s"}, "latency=3s", "the call timed out"},
			{"refuse", []string{"--refuse"}, "refuse", "the call failed"},
			{"bad-patch", []string{"--bad-patch"}, "bad-patch", "its patch could not be applied"},
		} {
			for _, fp := range []string{"Fail", "Ignore"} {
				ns := "fault-" + strings.ToLower(fp)
				hook := ns + ".gatehouse.test"
				args := append([]string{"webhook", "fault", hook, "--data-dir", inst.dataDir}, tc.flags...)
				if _, stderr, code := runGatehouse(t, time.Minute, args...); code != 0 {
					t.Fatalf("%s: exit %d: %s", strings.Join(args, " "), code, stderr)
				}
				name := tc.name + "-" + strings.ToLower(fp)
				out, err := create(ns, name)
				refused := fp == "Fail" || tc.name == "bad-patch"
				if refused != (err != nil) {
					t.Errorf("%s under %s: refused %v (%s), want refused %v", tc.name, fp, err != nil, out, refused)
				}
				p, _ := webhookPolicy(t, inst, ns, name, hook)
				verdict := map[bool]string{true: "failurePolicy Fail refused the request", false: "failurePolicy Ignore let the request through"}[fp == "Fail"]
				if tc.name == "bad-patch" && fp == "Ignore" {
					verdict = "refused although failurePolicy is Ignore"
				}
				if !strings.Contains(p.Reason, tc.call) || !strings.Contains(p.Reason, verdict) || p.Fault != tc.fault {
					t.Errorf("%s under %s: trace says %q with fault %q; want %q, %q and fault %q", tc.name, fp, p.Reason, p.Fault, tc.call, verdict, tc.fault)
				}
			}
		}
		// What a person reads: the trace's table and the call log.
		table, _, _ := runGatehouse(t, time.Minute, "trace", "--data-dir", inst.dataDir, "--namespace", "fault-ignore", "--limit", "3")
		t.Logf("gatehouse trace --namespace fault-ignore:\n%s", table)
		calls, _, _ := runGatehouse(t, time.Minute, "webhook", "log", "fault-ignore.gatehouse.test", "--data-dir", inst.dataDir, "--limit", "3")
		t.Logf("gatehouse webhook log fault-ignore.gatehouse.test:\n%s", calls)
		for _, fp := range []string{"fail", "ignore"} {
			runGatehouse(t, time.Minute, "webhook", "fault", "fault-"+fp+".gatehouse.test", "--clear", "--data-dir", inst.dataDir)
		}
		stdout, stderr, code := runGatehouse(t, time.Minute, "webhook", "fault", "nobody.gatehouse.test", "--status", "503", "--data-dir", inst.dataDir)
		if code != 0 || !strings.Contains(stderr, "no webhook named") {
			t.Errorf("a fault for a webhook that does not exist: exit %d, %s %s; want a warning", code, stdout, stderr)
		}
		if stdout, _, _ := runGatehouse(t, time.Minute, "webhook", "fault", "--data-dir", inst.dataDir); !strings.Contains(stdout, "nobody.gatehouse.test") || strings.Contains(stdout, "fault-fail") {
			t.Errorf("fault list:\n%s", stdout)
		}
	})

	t.Run("fault annotation", func(t *testing.T) {
		inst.mustKubectlIn(t, hookConfig("ValidatingWebhookConfiguration", "annotated",
			map[string]string{"gatehouse.dev/inject-ca-bundle": "true", "gatehouse.dev/fault": "latency=10ms,status=503"},
			hookSpec{name: "annotated.gatehouse.test", url: base + "/allow", namespace: "annotated", failurePolicy: "Fail", timeout: 5}), "apply", "-f", "-")
		createWhenCalled("annotated", "annotated", "annotated.gatehouse.test")
		out, err := create("annotated", "faulted")
		if err == nil {
			t.Errorf("status=503 from the annotation let the request through: %s", out)
		}
		p, _ := webhookPolicy(t, inst, "annotated", "faulted", "annotated.gatehouse.test")
		if p.Fault != "latency=10ms,status=503" || !strings.Contains(p.Reason, "failurePolicy Fail refused the request") {
			t.Errorf("trace: fault %q, %q", p.Fault, p.Reason)
		}
		_, stderr, err := inst.kubectlIn(t, hookConfig("ValidatingWebhookConfiguration", "badly-annotated",
			map[string]string{"gatehouse.dev/inject-ca-bundle": "true", "gatehouse.dev/fault": "latency=soon"},
			hookSpec{name: "x.gatehouse.test", url: base + "/allow", namespace: "annotated", failurePolicy: "Fail", timeout: 5}), "apply", "-f", "-")
		if err == nil || !strings.Contains(stderr, "gatehouse.dev/fault") {
			t.Errorf("a fault annotation that does not parse: %v, %s", err, stderr)
		}
	})

	t.Run("malformed answers", func(t *testing.T) {
		kinds := []string{"badjson", "wrongversion", "wrongkind", "uidmismatch"}
		for _, fp := range []string{"Fail", "Ignore"} {
			ns := "malformed-" + strings.ToLower(fp)
			var hooks []hookSpec
			for _, k := range kinds {
				hooks = append(hooks, hookSpec{name: k + "." + ns + ".gatehouse.test", url: base + "/" + k, namespace: ns, failurePolicy: fp, timeout: 5})
			}
			inst.mustKubectlIn(t, hookConfig("ValidatingWebhookConfiguration", ns, nil, hooks...), "apply", "-f", "-")
			createWhenCalled(ns, "warmup", hooks[0].name)
			out, err := create(ns, "malformed")
			if (fp == "Fail") != (err != nil) {
				t.Errorf("malformed answers under %s: %v, %s", fp, err, out)
			}
			verdict := map[bool]string{true: "failurePolicy Fail refused the request", false: "failurePolicy Ignore let the request through"}[fp == "Fail"]
			for _, h := range hooks {
				p, _ := webhookPolicy(t, inst, ns, "malformed", h.name)
				if !strings.Contains(p.Reason, "its answer was refused") || !strings.Contains(p.Reason, verdict) {
					t.Errorf("%s: trace says %q; want upstream's reason and %q", h.name, p.Reason, verdict)
				}
				t.Logf("%s: %s (call %d)", h.name, p.Reason, p.Exchange)
			}
		}
	})

	t.Run("huge answer", func(t *testing.T) {
		inst.mustKubectlIn(t, hookConfig("ValidatingWebhookConfiguration", "huge", nil,
			hookSpec{name: "huge.gatehouse.test", url: base + "/huge", namespace: "huge", failurePolicy: "Fail", timeout: 10}), "apply", "-f", "-")
		createWhenCalled("huge", "huge", "huge.gatehouse.test")
		list := exchanges(t, inst, "huge.gatehouse.test")
		e := list[len(list)-1]
		if !e.Truncated || e.ResponseBytes < 2<<20 || len(e.ResponseText) != webhooks.MaxRecordedAnswer || e.StatusCode != 200 {
			t.Errorf("2 MiB answer recorded as truncated %v, %d bytes, %d kept", e.Truncated, e.ResponseBytes, len(e.ResponseText))
		}
		if out, err := create("huge", "allowed"); err != nil {
			t.Errorf("a 2 MiB answer that allows: %v, %s", err, out)
		}
	})

	t.Run("Ignore timeouts past the request deadline", func(t *testing.T) {
		var hooks []hookSpec
		for _, n := range []string{"a", "b", "c"} {
			hooks = append(hooks, hookSpec{name: n + ".deadline.gatehouse.test", url: base + "/allow", namespace: "deadline", failurePolicy: "Ignore", timeout: 2})
		}
		inst.mustKubectlIn(t, hookConfig("MutatingWebhookConfiguration", "deadline", nil, hooks...), "apply", "-f", "-")
		createWhenCalled("deadline", "warmup", hooks[0].name)
		for _, h := range hooks {
			runGatehouse(t, time.Minute, "webhook", "fault", h.name, "--timeout", "--data-dir", inst.dataDir)
		}
		// The request's own deadline is its timeout parameter (client-go
		// would set it to its client timeout): a raw request.
		client, err := rest.HTTPClientFor(inst.config)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Post(inst.config.Host+"/api/v1/namespaces/deadline/configmaps?timeout=3s", "application/json",
			strings.NewReader(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"late"}}`))
		// The API server answers 504, or resets the stream when the
		// handler was still running at its deadline: either way it failed.
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Errorf("three 2s timeouts under a 3s request deadline: %s %s; want the request to fail", resp.Status, body)
			}
		}
		_, step := webhookPolicy(t, inst, "deadline", "late", hooks[0].name)
		t.Logf("the step's message: %s", step.Message)
		for _, want := range []string{"128162", hooks[0].name, hooks[1].name, "failurePolicy Ignore"} {
			if !strings.Contains(step.Message, want) {
				t.Errorf("the step's message %q lacks %q", step.Message, want)
			}
		}
		for _, p := range step.Policies {
			if p.Name == hooks[2].name && p.Exchange == 0 && !strings.Contains(p.Reason, "not called") {
				t.Errorf("%s, never called, is traced as %s %q", p.Name, p.Verdict, p.Reason)
			}
		}
		for _, h := range hooks {
			runGatehouse(t, time.Minute, "webhook", "fault", h.name, "--clear", "--data-dir", inst.dataDir)
		}
	})

	t.Run("example webhook and replay", func(t *testing.T) {
		root, err := moduleRoot()
		if err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(t.TempDir(), "example-webhook")
		build := exec.Command("go", "build", "-o", bin, ".")
		build.Dir = filepath.Join(root, "examples", "webhook")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building the example: %v\n%s", err, out)
		}
		run := func(port int, args ...string) {
			cmd := exec.Command(bin, append([]string{"--cert-dir", certs, "--addr", fmt.Sprintf("127.0.0.1:%d", port)}, args...)...)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			poll(t, 10*time.Second, func() error {
				c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
				if err == nil {
					c.Close()
				}
				return err
			})
		}
		ports := freePorts(t, 2)
		run(ports[0])
		manifests, err := os.ReadFile(filepath.Join(root, "examples", "webhook", "manifests.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		inst.mustKubectlIn(t, strings.ReplaceAll(string(manifests), "127.0.0.1:9443", fmt.Sprintf("127.0.0.1:%d", ports[0])), "apply", "-f", "-")
		inst.mustKubectlIn(t, "", "create", "namespace", "demo")
		inst.mustKubectlIn(t, "", "label", "namespace", "demo", "gatehouse-example=webhook")
		poll(t, 30*time.Second, func() error {
			out, stderr, err := inst.kubectl(t, "-n", "demo", "run", "ok", "--image=busybox", "--labels=team=a", "--dry-run=server", "-o", "jsonpath={.metadata.labels.environment}")
			if err != nil || out != "dev" {
				return fmt.Errorf("pod with a team: %v, %q %s", err, out, stderr)
			}
			return nil
		})
		_, stderr, err := inst.kubectl(t, "-n", "demo", "run", "nolabel", "--image=busybox", "--dry-run=server")
		if err == nil || !strings.Contains(stderr, "team") {
			t.Fatalf("pod without a team: %v, %s", err, stderr)
		}
		calls := filepath.Join(t.TempDir(), "calls.jsonl")
		stdout, _, code := runGatehouse(t, time.Minute, "webhook", "log", "team.example.gatehouse.dev", "--data-dir", inst.dataDir, "-o", "json")
		if code != 0 || os.WriteFile(calls, []byte(stdout), 0o600) != nil {
			t.Fatal("saving the calls")
		}
		to := fmt.Sprintf("https://127.0.0.1:%d/validate-pods", ports[0])
		stdout, stderr, code = runGatehouse(t, time.Minute, "webhook", "replay", "--from", calls, "--to", to, "--ca-file", filepath.Join(certs, "ca.crt"))
		if code != 0 || strings.Contains(stdout, "DIFFER") {
			t.Errorf("replay against the same version: exit %d\n%s%s", code, stdout, stderr)
		}
		stdout, stderr, code = runGatehouse(t, time.Minute, "webhook", "replay", "--webhook", "team.example.gatehouse.dev", "--data-dir", inst.dataDir, "--to", to, "--insecure-skip-tls-verify")
		if code != 0 {
			t.Errorf("replay --webhook against the same version: exit %d\n%s%s", code, stdout, stderr)
		}
		run(ports[1], "--require-labels", "team,owner")
		next := fmt.Sprintf("https://127.0.0.1:%d/validate-pods", ports[1])
		stdout, stderr, code = runGatehouse(t, time.Minute, "webhook", "replay", "--from", calls, "--to", next, "--ca-file", filepath.Join(certs, "ca.crt"))
		if code != 1 || !strings.Contains(stdout, "allowed: true → false") || !strings.Contains(stdout, "owner") {
			t.Errorf("replay against the next version: exit %d, want 1 with the changed decision\n%s%s", code, stdout, stderr)
		}

		// gatehouse check with the webhook not running: the last recorded
		// answers (the team webhook's denial, the environment webhook's
		// patch) stand in for both webhooks.
		all := filepath.Join(t.TempDir(), "all.jsonl")
		stdout, _, code = runGatehouse(t, time.Minute, "webhook", "log", "--data-dir", inst.dataDir, "-o", "json")
		if code != 0 || os.WriteFile(all, []byte(stdout), 0o600) != nil {
			t.Fatal("saving the calls")
		}
		policies := t.TempDir()
		dead := strings.ReplaceAll(string(manifests), "127.0.0.1:9443", "127.0.0.1:1")
		if err := os.WriteFile(filepath.Join(policies, "webhooks.yaml"), []byte(dead), 0o600); err != nil {
			t.Fatal(err)
		}
		pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: demo, labels: {team: a}}\nspec: {containers: [{name: c, image: busybox}]}\n"
		stdout, stderr, code = runGatehouseIn(t, pod, "check", "--policies", policies, "-f", "-", "--namespace-labels", "demo=gatehouse-example=webhook", "--stub-webhooks", all)
		if code != 1 || !strings.Contains(stdout+stderr, "must have the label(s) team") {
			t.Errorf("check --stub-webhooks: exit %d, want 1 with the recorded denial\n%s%s", code, stdout, stderr)
		}
	})
}
