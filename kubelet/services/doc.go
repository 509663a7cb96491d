// Package services routes Services on a node and serves the cluster DNS:
// what kube-proxy and CoreDNS do in a kubeadm cluster, built into the node
// agent. It watches Services, EndpointSlices and ServiceCIDRs with the
// node's identity (the control plane binds system:node-proxier to
// system:nodes for that), and at every change, coalesced (a burst of two
// syncs, then one per MinSyncInterval),
//
//   - replaces the node's nftables table (package proxy) in one transaction,
//     with the cluster DNS Service (kube-system/kube-dns, selectorless) routed
//     to this node's own DNS server;
//   - gives the DNS server (package dns) a new index of names.
//
// The DNS server listens on the pod bridge's gateway address (the first
// address of the node's pod CIDR), port 53. Stop deletes the table and puts
// the kernel settings back.
//
// It needs real pod networking: the node agent starts it only with the
// containerd it runs itself (bridge gatehouse0), never with the simulated
// runtime.
//
//	s, err := services.Start(ctx, services.Config{NodeName: name, Client: client, PodCIDR: cidr, StateDir: dir})
//	if err != nil { ... }
//	clusterDNS := s.ClusterDNS() // for the pods' resolv.conf
//	...
//	err = s.Stop()
package services
