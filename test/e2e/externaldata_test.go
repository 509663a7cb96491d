package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/admission/externaldata"
	"github.com/gatehouse-dev/gatehouse/admission/trace"
	"github.com/gatehouse-dev/gatehouse/webhooks"
)

// imageProvider is an external data provider as Gatekeeper users write
// them (image signature checks, tag-to-digest): a key with "unsigned" in
// it has an error, any other is answered with a digest; under /down it
// answers a systemError. It records the keys and the client certificates.
type imageProvider struct {
	mu        sync.Mutex
	keys      []string
	clientCNs []string
}

const testDigest = "@sha256:4bcf1f2b6e3ec9a24b0f25ed0ba1b8a4fc1b7e2c3a9b33ce1c39bd63a86a3d43"

func (p *imageProvider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req externaldata.ProviderRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.keys = append(p.keys, req.Request.Keys...)
	if len(r.TLS.PeerCertificates) > 0 {
		p.clientCNs = append(p.clientCNs, r.TLS.PeerCertificates[0].Subject.CommonName)
	}
	p.mu.Unlock()
	if r.URL.Path == "/slow" {
		select {
		case <-r.Context().Done():
		case <-time.After(1500 * time.Millisecond):
		}
	}
	resp := externaldata.ProviderResponse{APIVersion: externaldata.APIVersion, Kind: "ProviderResponse", Response: externaldata.Response{Idempotent: true}}
	if r.URL.Path == "/down" {
		resp.Response.SystemError = "the registry is down"
	}
	for _, k := range req.Request.Keys {
		if strings.Contains(k, "unsigned") {
			resp.Response.Items = append(resp.Response.Items, externaldata.Item{Key: k, Error: "image is not signed"})
		} else {
			resp.Response.Items = append(resp.Response.Items, externaldata.Item{Key: k, Value: k + testDigest})
		}
	}
	json.NewEncoder(w).Encode(resp)
}

func (p *imageProvider) seen() ([]string, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.keys), slices.Clone(p.clientCNs)
}

const signedImagesTemplate = `apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8ssignedimages
spec:
  crd:
    spec:
      names:
        kind: K8sSignedImages
      validation:
        openAPIV3Schema:
          type: object
          properties:
            provider:
              type: string
  targets:
  - target: admission.k8s.gatekeeper.sh
    rego: |
      package k8ssignedimages

      images := [img | img := input.review.object.spec.containers[_].image]

      violation[{"msg": msg}] {
        response := external_data({"provider": input.parameters.provider, "keys": images})
        response.system_error != ""
        msg := sprintf("provider %v could not check the images: %v", [input.parameters.provider, response.system_error])
      }

      violation[{"msg": msg}] {
        response := external_data({"provider": input.parameters.provider, "keys": images})
        [image, err] := response.errors[_]
        msg := sprintf("image %v: %v", [image, err])
      }
`

func providerManifest(name, url string) string {
	return fmt.Sprintf(`apiVersion: externaldata.gatekeeper.sh/v1beta1
kind: Provider
metadata:
  name: %s
  annotations:
    gatehouse.dev/inject-ca-bundle: "true"
spec:
  url: %s
  timeout: 3
`, name, url)
}

const imageDigestsAssign = `apiVersion: mutations.gatekeeper.sh/v1
kind: Assign
metadata:
  name: image-digests
spec:
  applyTo: [{groups: [""], versions: [v1], kinds: [Pod]}]
  match:
    namespaces: [digests, digests-fail]
  location: "spec.containers[name: *].image"
  parameters:
    assign:
      externalData:
        provider: images
`

func podIn(ns, name, image string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n  containers:\n  - name: app\n    image: %s\n", name, ns, image)
}

// TestExternalData: Gatekeeper external data end to end with a real HTTPS
// provider: Providers with the Gatehouse CA injected, refused when
// Gatekeeper would refuse them; a ConstraintTemplate calling external_data
// denies and allows, through mTLS, traced; a provider's systemError; an
// Assign with externalData writing the provider's value, and refusing in
// Gatekeeper's words when the provider has none.
func TestExternalData(t *testing.T) {
	// No response cache: every call reaches the provider, to be counted.
	inst := startGatehouse(t, "--external-data-provider-response-cache-ttl", "0")
	certs := t.TempDir()
	if _, stderr, code := runGatehouse(t, time.Minute, "webhook", "certs", "--data-dir", inst.dataDir, "--ip", "127.0.0.1", "--out", certs); code != 0 {
		t.Fatalf("webhook certs: exit %d: %s", code, stderr)
	}
	caPEM, err := os.ReadFile(filepath.Join(certs, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(certs, "tls.crt"), filepath.Join(certs, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	clientCAs := x509.NewCertPool()
	clientCAs.AppendCertsFromPEM(caPEM)
	provider := &imageProvider{}
	srv := httptest.NewUnstartedServer(provider)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: clientCAs}
	srv.StartTLS()
	defer srv.Close()

	for _, ns := range []string{"signed", "down", "digests", "digests-fail", "digests-slow"} {
		inst.mustKubectlIn(t, "", "create", "namespace", ns)
	}
	// Stored before the constraints: for the audit to find.
	inst.mustKubectlIn(t, podIn("signed", "legacy", "registry.example/legacy:unsigned"), "create", "-f", "-")

	t.Run("Providers", func(t *testing.T) {
		_, stderr, err := inst.kubectlIn(t, strings.Replace(providerManifest("plain-http", "http://127.0.0.1:1/"), "https", "http", 1), "apply", "-f", "-")
		if err == nil || !strings.Contains(stderr, "spec.url: only HTTPS scheme is supported for Providers") {
			t.Errorf("an http Provider: %v, %s; want a refusal naming spec.url", err, stderr)
		}
		inst.mustKubectlIn(t, providerManifest("images", srv.URL+"/check")+"---\n"+providerManifest("down", srv.URL+"/down")+"---\n"+providerManifest("slow", srv.URL+"/slow"), "apply", "-f", "-")
		got := inst.mustKubectlIn(t, "", "get", "provider", "images", "-o", "jsonpath={.spec.caBundle}")
		if want := base64.StdEncoding.EncodeToString(caPEM); got != want {
			t.Errorf("spec.caBundle = %.40q…, want the Gatehouse CA", got)
		}
		for _, p := range []string{"provider/images", "provider/down", "provider/slow"} {
			if _, stderr, err := inst.kubectl(t, "wait", "--for=jsonpath={.status.byPod[0].active}=true", "--timeout=20s", p); err != nil {
				t.Errorf("kubectl wait for %s active: %v\n%s", p, err, stderr)
			}
		}
		// No timeout: a warning, as Gatekeeper's validation would give the
		// calls no time.
		_, stderr, err = inst.kubectlIn(t, strings.Replace(providerManifest("no-timeout", srv.URL+"/check"), "  timeout: 3\n", "", 1), "apply", "-f", "-")
		if err != nil || !strings.Contains(stderr, "spec.timeout is 0 or unset") {
			t.Errorf("a Provider without timeout: %v, %s; want a warning", err, stderr)
		}
	})

	inst.mustKubectlIn(t, signedImagesTemplate, "apply", "-f", "-")
	constraints := `apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sSignedImages
metadata:
  name: signed-images
spec:
  match:
    kinds: [{apiGroups: [""], kinds: [Pod]}]
    namespaces: [signed]
  parameters:
    provider: images
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sSignedImages
metadata:
  name: registry-down
spec:
  match:
    kinds: [{apiGroups: [""], kinds: [Pod]}]
    namespaces: [down]
  parameters:
    provider: down
`
	// The constraint's CRD is served a moment after the template is stored.
	poll(t, 30*time.Second, func() error {
		if _, stderr, err := inst.kubectlIn(t, constraints, "apply", "-f", "-"); err != nil {
			return fmt.Errorf("%v: %s", err, stderr)
		}
		return nil
	})
	for _, c := range []string{"k8ssignedimages/signed-images", "k8ssignedimages/registry-down"} {
		if _, stderr, err := inst.kubectl(t, "wait", "--for=jsonpath={.status.byPod[0].enforced}=true", "--timeout=20s", c); err != nil {
			t.Fatalf("kubectl wait for %s enforced: %v\n%s", c, err, stderr)
		}
	}

	t.Run("a template asks the provider", func(t *testing.T) {
		_, stderr, err := inst.kubectlIn(t, podIn("signed", "unsigned", "registry.example/app:unsigned"), "create", "--dry-run=server", "-f", "-")
		want := `admission webhook "validation.gatekeeper.sh" denied the request: [signed-images] image registry.example/app:unsigned: image is not signed`
		if err == nil || !strings.Contains(stderr, want) {
			t.Errorf("an unsigned image: %v\n%s\nwant %s", err, stderr, want)
		}
		for range 2 {
			if _, stderr, err := inst.kubectlIn(t, podIn("signed", "good", "registry.example/app:1"), "create", "--dry-run=server", "-f", "-"); err != nil {
				t.Errorf("a signed image: %v\n%s", err, stderr)
			}
		}
		keys, cns := provider.seen()
		if n := len(slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return k != "registry.example/app:1" })); n != 2 {
			t.Errorf("the provider was asked for registry.example/app:1 %d times, want 2 (the cache is off)", n)
		}
		if !slices.Contains(keys, "registry.example/app:unsigned") || !slices.Contains(keys, "registry.example/app:1") {
			t.Errorf("keys the provider saw: %v", keys)
		}
		if len(cns) == 0 || slices.ContainsFunc(cns, func(cn string) bool { return cn != "gatehouse-external-data" }) {
			t.Errorf("client certificates offered: %v, want Gatehouse's (gatehouse-external-data)", cns)
		}
		// /metrics counts the calls.
		metricsOut := inst.mustKubectlIn(t, "", "get", "--raw", "/metrics")
		if !strings.Contains(metricsOut, `gatehouse_external_data_provider_requests_total{outcome="ok",provider="images"}`) ||
			!strings.Contains(metricsOut, `gatehouse_external_data_provider_request_duration_seconds_count{provider="images"}`) {
			t.Errorf("/metrics lacks the provider's calls:\n%s", grepLines(metricsOut, "external_data"))
		}
		// The trace names the provider, its keys and what it answered.
		stdout, stderr, code := runGatehouse(t, time.Minute, "trace", "--data-dir", inst.dataDir, "--namespace", "signed", "--name", "unsigned", "--limit", "1", "-o", "json")
		if code != 0 {
			t.Fatalf("gatehouse trace: exit %d: %s", code, stderr)
		}
		var list struct {
			Traces []trace.Trace `json:"traces"`
		}
		if err := json.Unmarshal([]byte(stdout), &list); err != nil || len(list.Traces) == 0 {
			t.Fatalf("trace: %v, %s", err, stdout)
		}
		var found *trace.Policy
		for _, s := range list.Traces[0].Steps {
			for _, p := range s.Policies {
				if p.Kind == "Provider" && p.Name == "images" {
					found = &p
				}
			}
		}
		if found == nil || !strings.Contains(found.Reason, "external_data: 1 keys") {
			t.Errorf("the trace's Provider policy: %+v\n%s", found, stdout)
		}
	})

	t.Run("provider calls in the webhook kit: log and faults", func(t *testing.T) {
		stdout, stderr, code := runGatehouse(t, time.Minute, "webhook", "log", "images", "--data-dir", inst.dataDir, "-o", "json")
		if code != 0 {
			t.Fatalf("webhook log: exit %d: %s", code, stderr)
		}
		list, err := webhooks.ReadExchanges(strings.NewReader(stdout))
		if err != nil || len(list) == 0 {
			t.Fatalf("webhook log images: %v, %d calls", err, len(list))
		}
		if e := list[len(list)-1]; e.Kind != webhooks.KindProvider || !strings.Contains(string(e.Request), `"kind":"ProviderRequest"`) || e.StatusCode != 200 {
			t.Errorf("the provider's last call as logged: kind %q, status %d, request %s", e.Kind, e.StatusCode, e.Request)
		}
		stdout, _, _ = runGatehouse(t, time.Minute, "webhook", "log", "images", "--data-dir", inst.dataDir)
		if !strings.Contains(stdout, "Provider/images") || !strings.Contains(stdout, "answered 1 keys") {
			t.Errorf("webhook log table:\n%s", stdout)
		}
		_, stderr, code = runGatehouse(t, time.Minute, "webhook", "fault", "images", "--refuse", "--data-dir", inst.dataDir)
		if code != 0 || strings.Contains(stderr, "no webhook named") {
			t.Fatalf("webhook fault images --refuse: exit %d: %s", code, stderr)
		}
		_, stderr, err = inst.kubectlIn(t, podIn("signed", "refused", "registry.example/app:5"), "create", "--dry-run=server", "-f", "-")
		if err == nil || !strings.Contains(stderr, "[signed-images] provider images could not check the images: failed to send external data request") || !strings.Contains(stderr, "connection refused") {
			t.Errorf("a refused provider: %v\n%s", err, stderr)
		}
		runGatehouse(t, time.Minute, "webhook", "fault", "images", "--clear", "--data-dir", inst.dataDir)
		if _, stderr, err := inst.kubectlIn(t, podIn("signed", "after", "registry.example/app:5"), "create", "--dry-run=server", "-f", "-"); err != nil {
			t.Errorf("after --clear: %v\n%s", err, stderr)
		}
	})

	t.Run("gatehouse audit asks the providers", func(t *testing.T) {
		stdout, stderr, code := runGatehouse(t, time.Minute, "audit", "--data-dir", inst.dataDir)
		if code != 1 || !strings.Contains(stdout, "image registry.example/legacy:unsigned: image is not signed") {
			t.Errorf("exit %d, want 1 with the stored pod's violation; stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
	})

	t.Run("a provider's system error", func(t *testing.T) {
		_, stderr, err := inst.kubectlIn(t, podIn("down", "any", "registry.example/app:2"), "create", "--dry-run=server", "-f", "-")
		if err == nil || !strings.Contains(stderr, "[registry-down] provider down could not check the images: the registry is down") {
			t.Errorf("a provider with a systemError: %v\n%s", err, stderr)
		}
	})

	t.Run("Assign with externalData", func(t *testing.T) {
		inst.mustKubectlIn(t, imageDigestsAssign, "apply", "-f", "-")
		if _, stderr, err := inst.kubectl(t, "wait", "--for=jsonpath={.status.byPod[0].enforced}=true", "--timeout=20s", "assign/image-digests"); err != nil {
			t.Fatalf("kubectl wait for the Assign: %v\n%s", err, stderr)
		}
		image := ""
		poll(t, 30*time.Second, func() error {
			out, stderr, err := inst.kubectlIn(t, podIn("digests", "pinned", "registry.example/app:3"), "create", "--dry-run=server", "-o", "jsonpath={.spec.containers[0].image}", "-f", "-")
			if err != nil {
				return fmt.Errorf("%v: %s", err, stderr)
			}
			if image = out; image == "registry.example/app:3" {
				return fmt.Errorf("not mutated yet")
			}
			return nil
		})
		if want := "registry.example/app:3" + testDigest; image != want {
			t.Errorf("image = %q, want %q", image, want)
		}
		// Retried only if the provider (on this loaded machine) took more
		// than the mutation's 1 s, which lets the request through.
		want := `admission webhook "mutation.gatekeeper.sh" denied the request: failed to resolve external data placeholders: failed to retrieve external data item from provider images: image is not signed`
		poll(t, 30*time.Second, func() error {
			_, stderr, err := inst.kubectlIn(t, podIn("digests-fail", "unpinned", "registry.example/app:unsigned"), "create", "--dry-run=server", "-f", "-")
			switch {
			case err == nil && strings.Contains(stderr, "did not finish within"):
				return fmt.Errorf("the provider took over 1 s: %s", stderr)
			case err == nil || !strings.Contains(stderr, want):
				t.Fatalf("no value under failurePolicy Fail: %v\n%s\nwant %s", err, stderr, want)
			}
			return nil
		})
		// Past the 1 s of Gatekeeper's mutating webhook, failurePolicy
		// Ignore lets the request through unmutated.
		inst.mustKubectlIn(t, strings.NewReplacer("image-digests", "slow-digests", "[digests, digests-fail]", "[digests-slow]", "provider: images", "provider: slow").Replace(imageDigestsAssign), "apply", "-f", "-")
		if _, stderr, err := inst.kubectl(t, "wait", "--for=jsonpath={.status.byPod[0].enforced}=true", "--timeout=20s", "assign/slow-digests"); err != nil {
			t.Fatalf("kubectl wait for the Assign: %v\n%s", err, stderr)
		}
		poll(t, 30*time.Second, func() error {
			out, stderr, err := inst.kubectlIn(t, podIn("digests-slow", "late", "registry.example/app:4"), "create", "--dry-run=server", "-o", "jsonpath={.spec.containers[0].image}", "-f", "-")
			if err != nil {
				return fmt.Errorf("%v: %s", err, stderr)
			}
			if out != "registry.example/app:4" || !strings.Contains(stderr, "did not finish within 1s") {
				return fmt.Errorf("image %q, warnings %q; want it unmutated, with the timeout's warning", out, stderr)
			}
			return nil
		})
	})
}

// grepLines returns the lines of s that contain substr.
func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
