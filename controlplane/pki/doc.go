// Package pki creates and keeps the certificates, keys and kubeconfigs of one
// Gatehouse data directory.
//
// A cluster CA, a front-proxy CA and an etcd CA are generated once per data
// directory and reused on every start, so kubeconfigs handed out earlier keep
// working. Leaf certificates are re-issued when they are missing, no longer
// signed by their CA, about to expire, or lack a name they must now serve (the
// host name changed, say). The layout follows kubeadm's /etc/kubernetes/pki.
//
//	bundle, err := pki.Ensure(pki.Options{Dir: "/root/.gatehouse/pki", ...})
//	if err != nil { ... }
//	err = bundle.WriteKubeconfig(path, bundle.Admin, "https://127.0.0.1:6443")
package pki
