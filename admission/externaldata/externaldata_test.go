package externaldata

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/component-base/metrics/testutil"
)

func providerObject(name string, spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "externaldata.gatekeeper.sh/v1beta1", "kind": "Provider",
		"metadata": map[string]any{"name": name}, "spec": spec,
	}}
}

func pemOf(cert *x509.Certificate) string {
	return base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
}

func TestParse(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	ca := pemOf(srv.Certificate())
	tests := []struct {
		name string
		obj  *unstructured.Unstructured
		want string
	}{
		{"no url", providerObject("p", map[string]any{"caBundle": ca}), "spec.url: invalid provider url"},
		{"http", providerObject("p", map[string]any{"url": "http://127.0.0.1/x", "caBundle": ca}), "spec.url: only HTTPS scheme is supported for Providers"},
		{"negative timeout", providerObject("p", map[string]any{"url": "https://127.0.0.1/x", "timeout": int64(-1), "caBundle": ca}), "spec.timeout: provider timeout should be a positive integer. value: -1"},
		{"no caBundle", providerObject("p", map[string]any{"url": "https://127.0.0.1/x"}), "spec.caBundle: caBundle should be set for HTTPS scheme"},
		{"caBundle not base64", providerObject("p", map[string]any{"url": "https://127.0.0.1/x", "caBundle": "%%%"}), "spec.caBundle: failed to base64 decode caBundle"},
		{"caBundle not PEM", providerObject("p", map[string]any{"url": "https://127.0.0.1/x", "caBundle": base64.StdEncoding.EncodeToString([]byte("hello"))}), "spec.caBundle: bad caBundle"},
		{"timeout not a number", providerObject("p", map[string]any{"url": "https://127.0.0.1/x", "timeout": "3s", "caBundle": ca}), "spec:"},
		{"long name", providerObject(strings.Repeat("a", 64), map[string]any{"url": "https://127.0.0.1/x", "caBundle": ca}), "metadata.name: resource cannot have metadata.name larger than 63 char; length: 64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.obj)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse: %v, want %q", err, tt.want)
			}
		})
	}
	p, err := Parse(providerObject("p", map[string]any{"url": "https://127.0.0.1/x", "timeout": int64(2), "caBundle": ca}))
	if err != nil {
		t.Fatal(err)
	}
	if p.Timeout != 2*time.Second || p.ZeroTimeout {
		t.Errorf("timeout %s (zero %v), want 2s", p.Timeout, p.ZeroTimeout)
	}
	p, err = Parse(providerObject("p", map[string]any{"url": "https://127.0.0.1/x", "caBundle": ca}))
	if err != nil || p.Timeout != DefaultTimeout || !p.ZeroTimeout {
		t.Errorf("no timeout: %v, %v; want DefaultTimeout, flagged", p, err)
	}
}

// fakeProvider answers keys as Gatekeeper's providers do: the key upper
// cased, "bad" with an error, and "system" with a systemError. It records
// the keys of each call and the client certificate offered.
type fakeProvider struct {
	mu         sync.Mutex
	calls      [][]string
	clientCNs  []string
	apiVersion string
}

func (f *fakeProvider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req ProviderRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.calls = append(f.calls, req.Request.Keys)
	f.apiVersion = req.APIVersion + " " + req.Kind
	if len(r.TLS.PeerCertificates) > 0 {
		f.clientCNs = append(f.clientCNs, r.TLS.PeerCertificates[0].Subject.CommonName)
	}
	f.mu.Unlock()
	resp := ProviderResponse{APIVersion: APIVersion, Kind: "ProviderResponse", Response: Response{Idempotent: true}}
	for _, k := range req.Request.Keys {
		switch k {
		case "bad":
			resp.Response.Items = append(resp.Response.Items, Item{Key: k, Error: "no such key"})
		case "system":
			resp.Response.SystemError = "the registry is down"
		default:
			resp.Response.Items = append(resp.Response.Items, Item{Key: k, Value: strings.ToUpper(k)})
		}
	}
	json.NewEncoder(w).Encode(resp)
}

func (f *fakeProvider) keysCalled() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func startProvider(t testing.TB, clientAuth tls.ClientAuthType) (*fakeProvider, *httptest.Server) {
	t.Helper()
	f := &fakeProvider{}
	srv := httptest.NewUnstartedServer(f)
	srv.TLS = &tls.Config{ClientAuth: clientAuth}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return f, srv
}

func mustParse(t testing.TB, name, url, ca string) *Provider {
	t.Helper()
	p, err := Parse(providerObject(name, map[string]any{"url": url, "timeout": int64(3), "caBundle": ca}))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestQuery(t *testing.T) {
	ctx := context.Background()
	f, srv := startProvider(t, tls.NoClientCert)
	sys := NewSystem(nil, time.Minute)
	sys.Upsert(mustParse(t, "upper", srv.URL, pemOf(srv.Certificate())))

	a := sys.Query(ctx, "upper", []string{"a", "bad"})
	if want := [][2]any{{"a", "A"}}; !slices.Equal(a.Responses, want) || a.StatusCode != 200 || a.SystemError != "" {
		t.Errorf("answer = %+v, want responses %v, HTTP 200", a, want)
	}
	if want := [][2]any{{"bad", "no such key"}}; !slices.Equal(a.Errors, want) {
		t.Errorf("errors = %v, want %v", a.Errors, want)
	}
	if f.apiVersion != "externaldata.gatekeeper.sh/v1beta1 ProviderRequest" {
		t.Errorf("request was %s", f.apiVersion)
	}
	// Values and per-key errors come from the cache: no call, status 0.
	a = sys.Query(ctx, "upper", []string{"a", "bad"})
	if len(a.Responses) != 1 || len(a.Errors) != 1 || a.StatusCode != 0 {
		t.Errorf("cached answer = %+v, want the same items and status_code 0", a)
	}
	// Only the keys not cached are sent.
	a = sys.Query(ctx, "upper", []string{"a", "c"})
	if want := [][2]any{{"a", "A"}, {"c", "C"}}; !slices.Equal(a.Responses, want) || a.StatusCode != 200 {
		t.Errorf("answer = %+v, want %v", a, want)
	}
	if got, want := f.keysCalled(), [][]string{{"a", "bad"}, {"c"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("keys sent = %v, want %v", got, want)
	}
	// A systemError is passed on and not cached.
	for range 2 {
		a = sys.Query(ctx, "upper", []string{"system"})
		if a.SystemError != "the registry is down" {
			t.Errorf("systemError = %q", a.SystemError)
		}
	}
	if n := len(f.keysCalled()); n != 4 {
		t.Errorf("%d calls, want 4 (a systemError is not cached)", n)
	}
	// Gatekeeper's answer to an unknown provider: responses and errors null.
	v := sys.ExternalData(ctx, "nowhere", []string{"a"})
	if v["status_code"] != 400 || v["system_error"] != "key is not found in provider cache" || v["responses"] != nil || v["errors"] != nil {
		t.Errorf("unknown provider: %v", v)
	}
	// A removed provider is unknown, and its cache is gone with it.
	sys.Remove("upper")
	if a := sys.Query(ctx, "upper", []string{"a"}); a.StatusCode != 400 {
		t.Errorf("after Remove: %+v", a)
	}
	v = NewSystem(nil, time.Minute).ExternalData(ctx, "x", nil)
	if v["status_code"] != 0 || len(v["responses"].([]any)) != 0 {
		t.Errorf("no keys: %v, want no call and empty responses", v)
	}
}

func TestQueryWithoutCache(t *testing.T) {
	f, srv := startProvider(t, tls.NoClientCert)
	sys := NewSystem(nil, 0)
	sys.Upsert(mustParse(t, "upper", srv.URL, pemOf(srv.Certificate())))
	for range 2 {
		if a := sys.Query(context.Background(), "upper", []string{"a"}); a.StatusCode != 200 {
			t.Fatalf("answer %+v", a)
		}
	}
	if n := len(f.keysCalled()); n != 2 {
		t.Errorf("%d calls with the cache off, want 2", n)
	}
}

// TestTLS: only the provider's caBundle is trusted, and Gatehouse's client
// certificate is offered when the provider asks for one.
func TestTLS(t *testing.T) {
	ctx := context.Background()
	f, srv := startProvider(t, tls.RequireAnyClientCert)
	// httptest's servers share one certificate: another CA is made here.
	otherCA, err := x509.ParseCertificate(selfSigned(t, "other-ca").Certificate[0])
	if err != nil {
		t.Fatal(err)
	}

	sys := NewSystem(&Client{Certificate: func() (*tls.Certificate, error) { return selfSigned(t, "gatehouse-external-data"), nil }}, 0)
	sys.Upsert(mustParse(t, "wrong-ca", srv.URL, pemOf(otherCA)))
	if a := sys.Query(ctx, "wrong-ca", []string{"a"}); a.StatusCode != 500 || !strings.Contains(a.SystemError, "failed to send external data request") || !strings.Contains(a.SystemError, "certificate") {
		t.Errorf("a provider whose certificate the caBundle does not sign: %+v", a)
	}
	sys.Upsert(mustParse(t, "mtls", srv.URL, pemOf(srv.Certificate())))
	if a := sys.Query(ctx, "mtls", []string{"a"}); a.StatusCode != 200 {
		t.Fatalf("mTLS: %+v", a)
	}
	if !slices.Equal(f.clientCNs, []string{"gatehouse-external-data"}) {
		t.Errorf("client certificates offered: %v", f.clientCNs)
	}
	// Without a certificate to offer, a provider that requires one refuses.
	plain := NewSystem(nil, 0)
	plain.Upsert(mustParse(t, "mtls", srv.URL, pemOf(srv.Certificate())))
	if a := plain.Query(ctx, "mtls", []string{"a"}); a.SystemError == "" {
		t.Errorf("no client certificate for a provider that requires one: %+v", a)
	}
}

func TestTimeoutAndBadAnswers(t *testing.T) {
	ctx := context.Background()
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // so that the server notices the client going
		<-r.Context().Done()
	})
	mux.HandleFunc("/notjson", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>")) })
	mux.HandleFunc("/teapot", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		w.Write([]byte(`{"response":{"items":[{"key":"a","value":"A"}]}}`))
	})
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()
	ca := pemOf(srv.Certificate())
	sys := NewSystem(nil, 0)
	slow, err := Parse(providerObject("slow", map[string]any{"url": srv.URL + "/slow", "timeout": int64(1), "caBundle": ca}))
	if err != nil {
		t.Fatal(err)
	}
	sys.Upsert(slow)
	sys.Upsert(mustParse(t, "notjson", srv.URL+"/notjson", ca))
	sys.Upsert(mustParse(t, "teapot", srv.URL+"/teapot", ca))
	start := time.Now()
	if a := sys.Query(ctx, "slow", []string{"a"}); a.StatusCode != 500 || !strings.Contains(a.SystemError, "failed to send external data request") {
		t.Errorf("slow provider: %+v", a)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("a 1s timeout took %s", d)
	}
	if a := sys.Query(ctx, "notjson", []string{"a"}); a.StatusCode != 500 || !strings.Contains(a.SystemError, "failed to unmarshal external data response") {
		t.Errorf("not JSON: %+v", a)
	}
	// The status is passed on, not judged, as in Gatekeeper.
	if a := sys.Query(ctx, "teapot", []string{"a"}); a.StatusCode != http.StatusTeapot || len(a.Responses) != 1 {
		t.Errorf("HTTP 418 with items: %+v", a)
	}
}

func selfSigned(t *testing.T, cn string) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestResolve: Gatekeeper's mutation rules for a provider's answer.
func TestResolve(t *testing.T) {
	ctx := context.Background()
	answers := map[string]string{
		"/ok":       `{"response":{"idempotent":true,"items":[{"key":"nginx","value":"nginx@sha256:1"},{"key":"bad","error":"unknown image"},{"key":"num","value":3},{"key":"extra","value":"x"}]}}`,
		"/system":   `{"response":{"idempotent":true,"systemError":"registry down","items":[{"key":"nginx","value":"v"}]}}`,
		"/volatile": `{"response":{"items":[{"key":"nginx","value":"v"}]}}`,
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(answers[r.URL.Path]))
	}))
	defer srv.Close()
	ca := pemOf(srv.Certificate())
	sys := NewSystem(nil, time.Minute)
	for _, name := range []string{"ok", "system", "volatile"} {
		sys.Upsert(mustParse(t, name, srv.URL+"/"+name, ca))
	}
	values, keyErrs, err := sys.Resolve(ctx, "ok", []string{"nginx", "bad", "num"})
	if err != nil {
		t.Fatal(err)
	}
	if len(values) != 1 || values["nginx"] != "nginx@sha256:1" {
		t.Errorf("values = %v, want nginx's digest only (extra keys dropped)", values)
	}
	if e := keyErrs["bad"]; e == nil || e.Error() != "failed to retrieve external data item from provider ok: unknown image" {
		t.Errorf("bad: %v", e)
	}
	if e := keyErrs["num"]; e == nil || e.Error() != "failed to convert external data item value from provider ok to string, got type float64" {
		t.Errorf("num: %v", e)
	}
	for name, want := range map[string]string{
		"system":   "failed to validate external data response from provider system: non-empty system error: registry down",
		"volatile": "failed to validate external data response from provider volatile: non-idempotent response",
		"nowhere":  "failed to get external data provider nowhere: key is not found in provider cache",
	} {
		if _, _, err := sys.Resolve(ctx, name, []string{"nginx"}); err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
}

// TestStub: a stub answers for a provider by name, with no Provider and
// nothing sent: the items for the keys asked, its systemError and its
// idempotent flag.
func TestStub(t *testing.T) {
	ctx := context.Background()
	sys := NewSystem(nil, time.Minute)
	sys.Stub("signatures", Response{Idempotent: true, Items: []Item{{Key: "a", Value: "signed"}, {Key: "b", Error: "not signed"}, {Key: "c", Value: "other"}}})
	sys.Stub("down", Response{Idempotent: true, SystemError: "registry unreachable"})
	sys.Stub("volatile", Response{Items: []Item{{Key: "a", Value: "x"}}})
	a := sys.Query(ctx, "signatures", []string{"a", "b", "z"})
	if !slices.Equal(a.Responses, [][2]any{{"a", "signed"}}) || !slices.Equal(a.Errors, [][2]any{{"b", "not signed"}}) || a.StatusCode != 200 {
		t.Errorf("stubbed answer = %+v", a)
	}
	if a := sys.Query(ctx, "down", []string{"a"}); a.SystemError != "registry unreachable" {
		t.Errorf("stubbed systemError = %+v", a)
	}
	values, keyErrs, err := sys.Resolve(ctx, "signatures", []string{"a", "b"})
	if err != nil || values["a"] != "signed" || keyErrs["b"] == nil {
		t.Errorf("Resolve from a stub: %v, %v, %v", values, keyErrs, err)
	}
	if _, _, err := sys.Resolve(ctx, "volatile", []string{"a"}); err == nil || !strings.Contains(err.Error(), "non-idempotent response") {
		t.Errorf("a stub that is not idempotent: %v", err)
	}
}

// TestMetrics: calls are counted by provider and outcome and timed;
// answers from the cache are not calls.
func TestMetrics(t *testing.T) {
	ctx := context.Background()
	_, srv := startProvider(t, tls.NoClientCert)
	sys := NewSystem(nil, time.Minute)
	sys.Upsert(mustParse(t, "metered", srv.URL, pemOf(srv.Certificate())))
	sys.Stub("metered-stub", Response{Idempotent: true})
	count := func(provider, outcome string) float64 {
		t.Helper()
		v, err := testutil.GetCounterMetricValue(providerRequests.WithLabelValues(provider, outcome))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	sys.Query(ctx, "metered", []string{"a"})
	sys.Query(ctx, "metered", []string{"a"}) // from the cache
	sys.Query(ctx, "metered", []string{"system"})
	sys.Query(ctx, "metered-stub", []string{"a"})
	if ok, sysErr, stubbed := count("metered", outcomeOK), count("metered", outcomeSystemError), count("metered-stub", outcomeStubbed); ok != 1 || sysErr != 1 || stubbed != 1 {
		t.Errorf("ok %v, system_error %v, stubbed %v; want 1 each", ok, sysErr, stubbed)
	}
	if n, err := testutil.GetHistogramMetricCount(providerLatency.WithLabelValues("metered")); err != nil || n != 2 {
		t.Errorf("latency observations %d (%v), want 2", n, err)
	}
}
