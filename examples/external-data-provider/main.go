// Command external-data-provider is a Gatekeeper external data provider to
// try Gatehouse's external data with: /pin answers image tags with their
// digests (for an Assign with assign.externalData), /verify says whether
// an image is signed (for a template that calls external_data). See
// README.md.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"log"
	"net/http"
	"os"
	"path/filepath"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8443", "address to listen on")
	certDir := flag.String("cert-dir", "certs", "directory with tls.crt, tls.key and ca.crt ('gatehouse webhook certs --out')")
	flag.Parse()

	pair, err := tls.LoadX509KeyPair(filepath.Join(*certDir, "tls.crt"), filepath.Join(*certDir, "tls.key"))
	if err != nil {
		log.Fatalf("--cert-dir %s: %v", *certDir, err)
	}
	ca, err := os.ReadFile(filepath.Join(*certDir, "ca.crt"))
	if err != nil {
		log.Fatalf("--cert-dir %s: %v", *certDir, err)
	}
	clients := x509.NewCertPool()
	clients.AppendCertsFromPEM(ca)
	reg := &registry{
		digests: map[string]string{
			"registry.example/web:1": "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
			"registry.example/web:2": "sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
		},
		signed: map[string]bool{
			"registry.example/web@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08": true,
		},
	}
	srv := &http.Server{
		Addr:    *addr,
		Handler: reg.handler(),
		// Gatehouse offers its client certificate (from the same CA);
		// require it to accept calls from Gatehouse only.
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS13, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clients},
	}
	log.Printf("external data provider on https://%s (/pin, /verify)", *addr)
	log.Fatal(srv.ListenAndServeTLS("", ""))
}
