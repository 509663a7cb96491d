package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
	// renewBefore re-issues a leaf this long before it expires, so a
	// long-lived data directory never starts with an expired certificate.
	renewBefore = 30 * 24 * time.Hour
)

// Options says which names the serving certificates must carry.
type Options struct {
	// Dir holds every file this package writes (created 0700).
	Dir string
	// Hostname is added to the API server's serving certificate.
	Hostname string
	// APIServerIPs are extra IP SANs for the API server (the kubernetes
	// service IP, a non-loopback bind address).
	APIServerIPs []net.IP
}

// CertKey is a certificate and its private key, as files and parsed.
type CertKey struct {
	CertFile, KeyFile string
	Cert              *x509.Certificate
	Key               crypto.Signer
}

// Bundle is every credential one Gatehouse control plane uses.
type Bundle struct {
	Dir string

	CA, FrontProxyCA, EtcdCA CertKey

	APIServer              CertKey // serving
	APIServerKubeletClient CertKey
	APIServerEtcdClient    CertKey
	FrontProxyClient       CertKey
	EtcdServer             CertKey // serving and peer
	ControllerManager      CertKey // client identity system:kube-controller-manager
	ControllerManagerServe CertKey
	Scheduler              CertKey // client identity system:kube-scheduler
	SchedulerServe         CertKey
	Admin                  CertKey // client identity in system:masters
	// ExternalDataClient is offered to Gatekeeper external data providers
	// that ask for a client certificate (they trust the cluster CA).
	ExternalDataClient CertKey

	// ServiceAccountKeyFile and ServiceAccountPubFile sign and verify
	// service-account tokens.
	ServiceAccountKeyFile, ServiceAccountPubFile string
}

var loopbackIPs = []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}

// Ensure loads the credentials under opts.Dir, creating what is missing or
// stale. CAs and the service-account key are never replaced once written.
func Ensure(opts Options) (*Bundle, error) {
	if err := os.MkdirAll(filepath.Join(opts.Dir, "etcd"), 0o700); err != nil {
		return nil, fmt.Errorf("creating certificate directory: %w", err)
	}
	b := &Bundle{Dir: opts.Dir}
	var err error
	ca := func(name, cn string) CertKey {
		if err != nil {
			return CertKey{}
		}
		var ck CertKey
		ck, err = ensureCA(filepath.Join(opts.Dir, name), cn)
		return ck
	}
	b.CA = ca("ca", "gatehouse-ca")
	b.FrontProxyCA = ca("front-proxy-ca", "gatehouse-front-proxy-ca")
	b.EtcdCA = ca("etcd/ca", "gatehouse-etcd-ca")
	if err != nil {
		return nil, err
	}

	apiDNS := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
	if opts.Hostname != "" {
		apiDNS = append(apiDNS, opts.Hostname)
	}
	serving := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	leaves := []struct {
		dst  *CertKey
		ca   CertKey
		file string
		spec leafSpec
	}{
		{&b.APIServer, b.CA, "apiserver", leafSpec{cn: "kube-apiserver", usage: serving, dns: apiDNS, ips: append(slices.Clone(loopbackIPs), opts.APIServerIPs...)}},
		{&b.APIServerKubeletClient, b.CA, "apiserver-kubelet-client", leafSpec{cn: "kube-apiserver-kubelet-client", orgs: []string{"system:masters"}, usage: client}},
		{&b.FrontProxyClient, b.FrontProxyCA, "front-proxy-client", leafSpec{cn: "front-proxy-client", usage: client}},
		{&b.EtcdServer, b.EtcdCA, "etcd/server", leafSpec{cn: "gatehouse-etcd", usage: both, dns: []string{"localhost"}, ips: loopbackIPs}},
		{&b.APIServerEtcdClient, b.EtcdCA, "apiserver-etcd-client", leafSpec{cn: "kube-apiserver-etcd-client", usage: client}},
		{&b.ControllerManager, b.CA, "controller-manager", leafSpec{cn: "system:kube-controller-manager", usage: client}},
		{&b.ControllerManagerServe, b.CA, "controller-manager-serving", leafSpec{cn: "kube-controller-manager", usage: serving, dns: []string{"localhost"}, ips: loopbackIPs}},
		{&b.Scheduler, b.CA, "scheduler", leafSpec{cn: "system:kube-scheduler", usage: client}},
		{&b.SchedulerServe, b.CA, "scheduler-serving", leafSpec{cn: "kube-scheduler", usage: serving, dns: []string{"localhost"}, ips: loopbackIPs}},
		{&b.Admin, b.CA, "admin", leafSpec{cn: "gatehouse-admin", orgs: []string{"system:masters"}, usage: client}},
		{&b.ExternalDataClient, b.CA, externalDataClientName, leafSpec{cn: "gatehouse-external-data", usage: client}},
	}
	for _, l := range leaves {
		if *l.dst, err = ensureLeaf(filepath.Join(opts.Dir, l.file), l.ca, l.spec); err != nil {
			return nil, err
		}
	}

	b.ServiceAccountKeyFile = filepath.Join(opts.Dir, "sa.key")
	b.ServiceAccountPubFile = filepath.Join(opts.Dir, "sa.pub")
	if err := ensureServiceAccountKey(b.ServiceAccountKeyFile, b.ServiceAccountPubFile); err != nil {
		return nil, err
	}
	return b, nil
}

// externalDataClientName is the external data client certificate's file
// name (name.crt/.key) under a bundle's Dir.
const externalDataClientName = "external-data-client"

// LoadExternalDataClient loads the client certificate an Ensure wrote
// under dir for Gatekeeper external data providers (Bundle's
// ExternalDataClient), for the API server and for gatehouse audit.
func LoadExternalDataClient(dir string) (*tls.Certificate, error) {
	base := filepath.Join(dir, externalDataClientName)
	cert, err := tls.LoadX509KeyPair(base+".crt", base+".key")
	if err != nil {
		return nil, fmt.Errorf("external data client certificate: %w", err)
	}
	return &cert, nil
}

// LoadCA loads the cluster CA a previous Ensure wrote under dir, without
// touching anything else there (a running control plane's certificates
// stay as they are), to issue more identities from it.
func LoadCA(dir string) (*Bundle, error) {
	ca, err := loadCertKey(filepath.Join(dir, "ca"))
	if err != nil {
		return nil, fmt.Errorf("cluster CA in %s: %w", dir, err)
	}
	return &Bundle{Dir: dir, CA: ca}, nil
}

// IssueClient signs a client certificate for any identity (the node agent's
// system:node:<name>, a test user). It is written under Dir as name.crt/.key.
func (b *Bundle) IssueClient(name, cn string, orgs []string) (CertKey, error) {
	return ensureLeaf(filepath.Join(b.Dir, name), b.CA, leafSpec{cn: cn, orgs: orgs, usage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
}

// IssueServing signs a serving certificate from the cluster CA, written under
// Dir as name.crt/.key.
func (b *Bundle) IssueServing(name string, dns []string, ips []net.IP) (CertKey, error) {
	return ensureLeaf(filepath.Join(b.Dir, name), b.CA, leafSpec{cn: name, dns: dns, ips: ips, usage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
}

// SignServing signs a serving certificate for the names from the cluster CA
// in memory: nothing is written under Dir, so a certificate for someone
// else's server (a webhook) never lands among the cluster's own. It
// returns the certificate and its new key in PEM form.
func (b *Bundle) SignServing(cn string, dns []string, ips []net.IP) (certPEM, keyPEM []byte, err error) {
	if len(dns) == 0 && len(ips) == 0 {
		return nil, nil, errors.New("a serving certificate needs a DNS name or an IP address")
	}
	key, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, b.CA.Cert, key.Public(), b.CA.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing certificate %s: %w", cn, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

type leafSpec struct {
	cn    string
	orgs  []string
	usage []x509.ExtKeyUsage
	dns   []string
	ips   []net.IP
}

func ensureCA(base, cn string) (CertKey, error) {
	ck, err := loadCertKey(base)
	if err == nil {
		if !ck.Cert.IsCA {
			return CertKey{}, fmt.Errorf("%s is not a CA certificate", ck.CertFile)
		}
		return ck, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return CertKey{}, err
	}
	key, err := newKey()
	if err != nil {
		return CertKey{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return CertKey{}, fmt.Errorf("creating CA %s: %w", cn, err)
	}
	return writeCertKey(base, der, key)
}

func ensureLeaf(base string, ca CertKey, spec leafSpec) (CertKey, error) {
	if ck, err := loadCertKey(base); err == nil && leafIsCurrent(ck.Cert, ca, spec) {
		return ck, nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return CertKey{}, err
	}
	key, err := newKey()
	if err != nil {
		return CertKey{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		Subject:      pkix.Name{CommonName: spec.cn, Organization: spec.orgs},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  spec.usage,
		DNSNames:     spec.dns,
		IPAddresses:  spec.ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return CertKey{}, fmt.Errorf("signing certificate %s: %w", spec.cn, err)
	}
	return writeCertKey(base, der, key)
}

// leafIsCurrent reports whether a stored leaf can be kept as it is.
func leafIsCurrent(c *x509.Certificate, ca CertKey, spec leafSpec) bool {
	if c.CheckSignatureFrom(ca.Cert) != nil || time.Until(c.NotAfter) < renewBefore {
		return false
	}
	if c.Subject.CommonName != spec.cn || !slices.Equal(c.Subject.Organization, spec.orgs) {
		return false
	}
	for _, d := range spec.dns {
		if !slices.Contains(c.DNSNames, d) {
			return false
		}
	}
	for _, ip := range spec.ips {
		if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

func ensureServiceAccountKey(keyFile, pubFile string) error {
	var signer crypto.Signer
	if data, err := os.ReadFile(keyFile); err == nil {
		if signer, err = parseKey(data); err != nil {
			return fmt.Errorf("%s: %w", keyFile, err)
		}
	} else if errors.Is(err, os.ErrNotExist) {
		if signer, err = newKey(); err != nil {
			return err
		}
		if err := writeKey(keyFile, signer); err != nil {
			return err
		}
	} else {
		return fmt.Errorf("reading service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return err
	}
	return writeFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644)
}

func newKey() (crypto.Signer, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func newSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return n
}

func loadCertKey(base string) (CertKey, error) {
	ck := CertKey{CertFile: base + ".crt", KeyFile: base + ".key"}
	certPEM, err := os.ReadFile(ck.CertFile)
	if err != nil {
		return ck, err
	}
	keyPEM, err := os.ReadFile(ck.KeyFile)
	if err != nil {
		return ck, err
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return ck, fmt.Errorf("%s: no PEM certificate", ck.CertFile)
	}
	if ck.Cert, err = x509.ParseCertificate(block.Bytes); err != nil {
		return ck, fmt.Errorf("%s: %w", ck.CertFile, err)
	}
	if ck.Key, err = parseKey(keyPEM); err != nil {
		return ck, fmt.Errorf("%s: %w", ck.KeyFile, err)
	}
	return ck, nil
}

func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM private key")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
	return signer, nil
}

func writeCertKey(base string, der []byte, key crypto.Signer) (CertKey, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return CertKey{}, err
	}
	ck := CertKey{CertFile: base + ".crt", KeyFile: base + ".key", Cert: cert, Key: key}
	if err := writeKey(ck.KeyFile, key); err != nil {
		return CertKey{}, err
	}
	if err := writeFile(ck.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return CertKey{}, err
	}
	return ck, nil
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// writeFile replaces path atomically, so a crash never leaves half a key.
func writeFile(path string, data []byte, mode os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// PEM returns the certificate in PEM form.
func (ck CertKey) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ck.Cert.Raw})
}

// KeyPEM returns the private key in PEM form.
func (ck CertKey) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(ck.Key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
