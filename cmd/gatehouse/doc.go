// Command gatehouse runs a complete Kubernetes pod pipeline on one machine,
// with the admission chain at its centre, and the tools to test policies
// against it.
//
//	gatehouse up                 # etcd, kube-apiserver, controller-manager, scheduler
//	export KUBECONFIG=~/.gatehouse/kubeconfig
//	kubectl get ns
//
// Commands are thin: the work is in the library packages (controlplane,
// admission, policies, config). Exit codes: 0 success, 1 a failed check or
// a runtime failure, 2 bad usage or bad input.
package main
