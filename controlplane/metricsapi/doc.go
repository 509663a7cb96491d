// Package metricsapi serves the resource metrics API (metrics.k8s.io
// v1beta1: NodeMetrics and PodMetrics, what `kubectl top` and the
// HorizontalPodAutoscaler read) from inside Gatehouse's API server, doing
// what metrics-server does: every resolution (15 s) it scrapes each
// node's kubelet /metrics/resource with the API server's kubelet client
// identity, keeps the last two samples per node and container, and
// answers with CPU as the rate between them and memory as the last
// working set.
//
// The group is installed into the kube-apiserver (the aggregator's local
// delegate), and an APIService v1beta1.metrics.k8s.io without a service
// makes the aggregator route and list it as a local group, as it does the
// built-in ones. An aggregated server behind a Service would need the
// Service's endpoints (Gatehouse's own address) stored in etcd, stale
// after a restart on another port or address, and discovery would fail
// for every client while that server is down.
//
// Usage, between CreateServerChain and PrepareRun:
//
//	err := metricsapi.Install(aggregator.GenericAPIServer, metricsapi.Config{
//		Informers: versionedInformers, Kubelet: kubeletClientConfig,
//	})
package metricsapi
