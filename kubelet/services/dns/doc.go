// Package dns is the cluster DNS server of a Gatehouse node: the names
// CoreDNS's kubernetes plugin serves (with "pods insecure"), answered from an
// in-memory index of the cluster's Services and EndpointSlices, and every
// other name forwarded to the host's resolvers.
//
// Names, in the cluster zone (cluster.local):
//
//	<svc>.<ns>.svc           A/AAAA: the ClusterIPs; headless: the ready endpoints;
//	                         CNAME for an ExternalName Service; SRV: every port
//	<endpoint>.<svc>.<ns>.svc  A/AAAA of one endpoint, by its hostname or its
//	                         address with dashes (10-244-0-5)
//	_<port>._<proto>.<svc>.<ns>.svc  SRV of a named port
//	a-b-c-d.<ns>.pod         A a.b.c.d (any address, as "pods insecure")
//
// and PTR records for ClusterIPs and endpoint addresses. A name of the
// zone that does not exist is NXDOMAIN, one without records of the asked
// type NODATA; both carry the zone's SOA in the authority section, so that
// resolvers cache the negative answer (5 s, CoreDNS's TTL).
//
// The node agent serves it on the pod bridge's gateway address, port 53,
// UDP and TCP, and routes the cluster DNS Service (kube-system/kube-dns) to
// it; forwarding happens from the host, where resolvers on loopback
// (systemd-resolved's 127.0.0.53) are reachable as well.
//
//	srv := dns.NewServer(dns.Config{Zone: "cluster.local", Upstreams: dns.HostUpstreams("/etc/resolv.conf")})
//	srv.SetIndex(dns.NewIndex("cluster.local", services))
//	err := srv.ListenAndServe(ctx, "10.244.0.1:53")
package dns
