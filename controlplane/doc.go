// Package controlplane runs a complete Kubernetes control plane in the
// calling process: etcd (embedded, or an existing cluster), and upstream
// kube-apiserver, kube-controller-manager and kube-scheduler from
// k8s.io/kubernetes, configured as a kubeadm-built cluster configures them.
//
// Each component is configured from a flag map (defaults, then the user's
// passthrough arguments), started through its app package's exported entry
// points with a context this package owns, and gated on the readiness of what
// it needs. Cancelling the context stops them together, etcd last.
//
//	cp, err := controlplane.Start(ctx, cfg, logger)
//	if err != nil { ... }
//	fmt.Println("kubeconfig:", cp.Kubeconfig)
//	err = cp.Wait() // returns after ctx is cancelled and everything stopped
//
// This is the one package (with admission) that links k8s.io/kubernetes;
// keep everything else out of it so its tests stay cheap.
package controlplane
