package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

func TestEnsureCreatesAndReuses(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, Hostname: "myhost", APIServerIPs: []net.IP{net.ParseIP("10.96.0.1")}}
	b1, err := Ensure(opts)
	if err != nil {
		t.Fatal(err)
	}
	ca1, _ := os.ReadFile(b1.CA.CertFile)
	apiserver1, _ := os.ReadFile(b1.APIServer.CertFile)
	sa1, _ := os.ReadFile(b1.ServiceAccountKeyFile)

	b2, err := Ensure(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path string
		old  []byte
	}{{b2.CA.CertFile, ca1}, {b2.APIServer.CertFile, apiserver1}, {b2.ServiceAccountKeyFile, sa1}} {
		now, _ := os.ReadFile(f.path)
		if !bytes.Equal(now, f.old) {
			t.Errorf("%s changed on the second Ensure, want it reused", filepath.Base(f.path))
		}
	}

	// A new host name re-issues the serving certificate, never the CA.
	opts.Hostname = "otherhost"
	b3, err := Ensure(opts)
	if err != nil {
		t.Fatal(err)
	}
	if ca3, _ := os.ReadFile(b3.CA.CertFile); !bytes.Equal(ca3, ca1) {
		t.Error("CA replaced after a host name change")
	}
	if !slices.Contains(b3.APIServer.Cert.DNSNames, "otherhost") {
		t.Errorf("serving cert DNS names %v lack the new host name", b3.APIServer.Cert.DNSNames)
	}
	if info, err := os.Stat(b3.CA.KeyFile); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("CA key mode = %v (%v), want 0600", info.Mode().Perm(), err)
	}
}

func TestCertificates(t *testing.T) {
	b, err := Ensure(Options{Dir: t.TempDir(), Hostname: "myhost", APIServerIPs: []net.IP{net.ParseIP("10.96.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	roots := func(ca CertKey) *x509.CertPool {
		p := x509.NewCertPool()
		p.AddCert(ca.Cert)
		return p
	}
	serving := []struct {
		name  string
		ck    CertKey
		ca    CertKey
		hosts []string
	}{
		{"apiserver", b.APIServer, b.CA, []string{"127.0.0.1", "::1", "localhost", "myhost", "10.96.0.1", "kubernetes.default.svc.cluster.local"}},
		{"etcd", b.EtcdServer, b.EtcdCA, []string{"127.0.0.1", "localhost"}},
		{"controller-manager", b.ControllerManagerServe, b.CA, []string{"127.0.0.1"}},
		{"scheduler", b.SchedulerServe, b.CA, []string{"127.0.0.1"}},
	}
	for _, s := range serving {
		for _, host := range s.hosts {
			_, err := s.ck.Cert.Verify(x509.VerifyOptions{DNSName: host, Roots: roots(s.ca), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if err != nil {
				t.Errorf("%s serving cert does not verify for %s: %v", s.name, host, err)
			}
		}
	}
	clients := []struct {
		name string
		ck   CertKey
		ca   CertKey
		cn   string
		orgs []string
	}{
		{"admin", b.Admin, b.CA, "gatehouse-admin", []string{"system:masters"}},
		{"controller-manager", b.ControllerManager, b.CA, "system:kube-controller-manager", nil},
		{"scheduler", b.Scheduler, b.CA, "system:kube-scheduler", nil},
		{"etcd client", b.APIServerEtcdClient, b.EtcdCA, "kube-apiserver-etcd-client", nil},
		{"front proxy", b.FrontProxyClient, b.FrontProxyCA, "front-proxy-client", nil},
	}
	for _, c := range clients {
		if _, err := c.ck.Cert.Verify(x509.VerifyOptions{Roots: roots(c.ca), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s client cert does not verify: %v", c.name, err)
		}
		if c.ck.Cert.Subject.CommonName != c.cn || !slices.Equal(c.ck.Cert.Subject.Organization, c.orgs) {
			t.Errorf("%s subject = %v, want CN=%s O=%v", c.name, c.ck.Cert.Subject, c.cn, c.orgs)
		}
	}
	// The etcd CA must not vouch for API clients, and vice versa.
	if _, err := b.Admin.Cert.Verify(x509.VerifyOptions{Roots: roots(b.EtcdCA), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("admin certificate verifies against the etcd CA")
	}
}

func TestIssueClientAndKubeconfig(t *testing.T) {
	b, err := Ensure(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	node, err := b.IssueClient("node-a", "system:node:a", []string{"system:nodes"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := b.WriteKubeconfig(path, node, "https://127.0.0.1:6443"); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatalf("kubeconfig does not load: %v", err)
	}
	if cfg.Host != "https://127.0.0.1:6443" || !bytes.Equal(cfg.CAData, b.CA.PEM()) || !bytes.Equal(cfg.CertData, node.PEM()) {
		t.Errorf("kubeconfig = host %s, CA match %v, cert match %v", cfg.Host, bytes.Equal(cfg.CAData, b.CA.PEM()), bytes.Equal(cfg.CertData, node.PEM()))
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig mode = %v, want 0600", info.Mode().Perm())
	}
}

func TestCorruptFilesAreReported(t *testing.T) {
	dir := t.TempDir()
	if _, err := Ensure(Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.key"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Ensure(Options{Dir: dir})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("ca.key")) {
		t.Fatalf("Ensure with a corrupt CA key = %v, want an error naming ca.key", err)
	}
}

func TestSignServingWritesNothing(t *testing.T) {
	dir := t.TempDir()
	b, err := Ensure(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadDir(dir)
	certPEM, keyPEM, err := b.SignServing("hook", []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadDir(dir)
	if len(after) != len(before) {
		t.Errorf("SignServing wrote into the pki directory: %d entries, was %d", len(after), len(before))
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(b.CA.Cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost"}); err != nil {
		t.Errorf("not valid for localhost from the CA: %v", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1"}); err != nil {
		t.Errorf("not valid for 127.0.0.1 from the CA: %v", err)
	}
	if _, _, err := b.SignServing("hook", nil, nil); err == nil {
		t.Error("no names: no error")
	}
}
