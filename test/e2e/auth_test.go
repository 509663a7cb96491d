package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// TestAuthentication checks who the API server lets in. The subtests share
// an instance and only read, except for one service account.
func TestAuthentication(t *testing.T) {
	inst := startGatehouse(t)
	url := func(path string) string { return fmt.Sprintf("https://127.0.0.1:%d%s", inst.ports.api, path) }

	// A client that trusts the cluster CA and presents no certificate.
	caPEM, err := os.ReadFile(filepath.Join(inst.dataDir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("pki/ca.crt holds no PEM certificate:\n%s", caPEM)
	}
	noCert := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	get := func(t *testing.T, client *http.Client, path, bearer string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url(path), nil)
		if err != nil {
			t.Fatal(err)
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return resp.StatusCode, string(body)
	}

	t.Run("admin client certificate is accepted", func(t *testing.T) {
		// The control for the subtests below: the same URL works for the
		// admin kubeconfig.
		transport, err := rest.TransportFor(inst.config)
		if err != nil {
			t.Fatal(err)
		}
		admin := &http.Client{Timeout: 10 * time.Second, Transport: transport}
		if code, body := get(t, admin, "/api/v1/namespaces", ""); code != http.StatusOK {
			t.Errorf("GET /api/v1/namespaces as admin: HTTP %d, want 200: %s", code, body)
		}
	})

	t.Run("anonymous request is unauthorized", func(t *testing.T) {
		if code, body := get(t, noCert, "/api/v1/namespaces", ""); code != http.StatusUnauthorized {
			t.Errorf("GET /api/v1/namespaces without credentials: HTTP %d, want 401 (anonymous auth is off): %s", code, body)
		}
	})

	t.Run("service account without RBAC is forbidden", func(t *testing.T) {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "nobody"}}
		sas := inst.client.CoreV1().ServiceAccounts("default")
		if _, err := sas.Create(t.Context(), sa, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating service account default/nobody: %v", err)
		}
		req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(600))}}
		tr, err := sas.CreateToken(t.Context(), "nobody", req, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("TokenRequest for default/nobody: %v", err)
		}
		if tr.Status.Token == "" {
			t.Fatal("TokenRequest for default/nobody returned an empty token")
		}
		code, body := get(t, noCert, "/api/v1/namespaces/default/secrets", tr.Status.Token)
		if code != http.StatusForbidden {
			t.Fatalf("GET /api/v1/namespaces/default/secrets as default/nobody: HTTP %d, want 403: %s", code, body)
		}
		// 403 rather than 401 already says the token authenticated; the
		// message says as whom.
		if want := "system:serviceaccount:default:nobody"; !strings.Contains(body, want) {
			t.Errorf("403 body does not name the user %q: %s", want, body)
		}
	})
}
