// Package proxy programs the node's Service routing: one nftables table of
// Gatehouse's own (table ip gatehouse), written as text for `nft -f` and
// replaced whole in one transaction at every sync, with the semantics of
// kube-proxy's nftables mode (k8s.io/kubernetes/pkg/proxy/nftables): DNAT of
// ClusterIPs, NodePorts (on every local address, 127.0.0.1 included) and
// externalIPs to a random ready endpoint (numgen random mod N with a
// verdict map), serving-terminating endpoints when none is ready,
// externalTrafficPolicy and internalTrafficPolicy Local, masquerading for
// hairpin, NodePort and off-node traffic, and a reject for Services without
// endpoints and for addresses of the service CIDRs that no Service holds.
//
// It also sets the kernel settings the rules need (br_netfilter's
// bridge-nf-call-iptables, route_localnet) and puts the previous values back
// at stop.
//
// Usage:
//
//	text := proxy.Render(proxy.Config{PodCIDR: podCIDR, ServiceCIDRs: cidrs}, ports)
//	err := proxy.NFT{}.Replace(ctx, text) // one transaction
//	...
//	err = proxy.NFT{}.Delete(ctx)
package proxy
