package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/controlplane"
	"github.com/gatehouse-dev/gatehouse/controlplane/pki"
)

func TestWebhookCerts(t *testing.T) {
	dataDir := t.TempDir()
	pkiDir := controlplane.Layout{DataDir: dataDir}.PKIDir()
	bundle, err := pki.Ensure(pki.Options{Dir: pkiDir})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadDir(pkiDir)
	out := filepath.Join(t.TempDir(), "certs")
	args := []string{"webhook", "certs", "--data-dir", dataDir, "--host", "localhost", "--ip", "127.0.0.1", "--out", out}
	if code, output := runCaptured(t, args...); code != exitOK {
		t.Fatalf("exit %d: %s", code, output)
	}
	if after, _ := os.ReadDir(pkiDir); len(after) != len(before) {
		t.Errorf("the data dir's pki changed: %d entries, was %d", len(after), len(before))
	}
	if info, err := os.Stat(filepath.Join(out, "tls.key")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("tls.key: %v, mode %v", err, info.Mode().Perm())
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(out, "tls.crt"), filepath.Join(out, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	roots := x509.NewCertPool()
	caPEM, _ := os.ReadFile(filepath.Join(out, "ca.crt"))
	if !roots.AppendCertsFromPEM(caPEM) || leaf.CheckSignatureFrom(bundle.CA.Cert) != nil {
		t.Error("ca.crt is not the CA that signed tls.crt")
	}
	for _, name := range []string{"localhost", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	// Existing files stay without --force.
	old, _ := os.ReadFile(filepath.Join(out, "tls.crt"))
	if code, output := runCaptured(t, args...); code != exitUsage || !strings.Contains(output, "--force") {
		t.Errorf("again without --force: exit %d, %s", code, output)
	}
	if code, output := runCaptured(t, append(args, "--force")...); code != exitOK {
		t.Fatalf("--force: exit %d: %s", code, output)
	}
	if renewed, _ := os.ReadFile(filepath.Join(out, "tls.crt")); string(renewed) == string(old) {
		t.Error("--force kept the old certificate")
	}

	for _, bad := range [][]string{
		{"webhook", "certs", "--data-dir", dataDir, "--out", out},
		{"webhook", "certs", "--data-dir", dataDir, "--ip", "not-an-ip", "--out", out},
		{"webhook", "certs", "--data-dir", dataDir, "--ip", "127.0.0.1"},
	} {
		if code, output := runCaptured(t, bad...); code != exitUsage {
			t.Errorf("%v: exit %d, want 2: %s", bad, code, output)
		}
	}
	if code, output := runCaptured(t, "webhook", "certs", "--data-dir", t.TempDir(), "--ip", "127.0.0.1", "--out", t.TempDir()); code != exitFailed || !strings.Contains(output, "gatehouse up") {
		t.Errorf("no CA: exit %d, %s", code, output)
	}
}
