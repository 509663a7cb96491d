package services

import (
	"net/netip"
	"strings"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/gatehouse-dev/gatehouse/kubelet/services/dns"
	"github.com/gatehouse-dev/gatehouse/kubelet/services/proxy"
)

// The cluster DNS Service that the control plane creates without a
// selector; each node routes it to its own DNS server.
const (
	dnsNamespace = "kube-system"
	dnsService   = "kube-dns"
	dnsPort      = 53
)

// isClusterDNS: the selectorless kube-system/kube-dns. A kube-dns with a
// selector (CoreDNS deployed in the cluster) is routed like any Service.
func isClusterDNS(svc *v1.Service) bool {
	return svc.Namespace == dnsNamespace && svc.Name == dnsService && len(svc.Spec.Selector) == 0
}

// model turns the cluster's Services and EndpointSlices into what the
// rules and the DNS index are made of. gateway is the node's DNS address.
func model(svcs []*v1.Service, slices []*discoveryv1.EndpointSlice, nodeName string, gateway netip.Addr) ([]proxy.ServicePort, []dns.Service) {
	bySvc := map[string][]*discoveryv1.EndpointSlice{}
	for _, s := range slices {
		name := s.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		bySvc[s.Namespace+"/"+name] = append(bySvc[s.Namespace+"/"+name], s)
	}
	var ports []proxy.ServicePort
	var names []dns.Service
	for _, svc := range svcs {
		svcSlices := bySvc[svc.Namespace+"/"+svc.Name]
		names = append(names, dnsModel(svc, svcSlices))
		if !proxied(svc) {
			continue
		}
		clusterIP := firstIPv4(svc.Spec.ClusterIPs, svc.Spec.ClusterIP)
		var externalIPs []netip.Addr
		for _, s := range svc.Spec.ExternalIPs {
			if ip, err := netip.ParseAddr(s); err == nil && ip.Is4() {
				externalIPs = append(externalIPs, ip)
			}
		}
		for _, sp := range svc.Spec.Ports {
			p := proxy.ServicePort{
				Namespace: svc.Namespace, Name: svc.Name, PortName: sp.Name,
				Protocol: strings.ToLower(string(sp.Protocol)), ClusterIP: clusterIP, Port: int(sp.Port), NodePort: int(sp.NodePort),
				ExternalIPs:   externalIPs,
				InternalLocal: svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == v1.ServiceInternalTrafficPolicyLocal,
				ExternalLocal: svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal,
			}
			if p.Protocol == "" {
				p.Protocol = "tcp"
			}
			if isClusterDNS(svc) {
				if sp.Port == dnsPort && (p.Protocol == "udp" || p.Protocol == "tcp") && gateway.IsValid() {
					p.Endpoints = []proxy.Endpoint{{IP: gateway, Port: dnsPort, Ready: true, Serving: true, Local: true}}
				}
			} else {
				p.Endpoints = endpointsFor(sp, svcSlices, nodeName)
			}
			ports = append(ports, p)
		}
	}
	return ports, names
}

// proxied: Services that get rules (kube-proxy skips the same ones).
func proxied(svc *v1.Service) bool {
	if svc.Spec.Type == v1.ServiceTypeExternalName || svc.Spec.ClusterIP == v1.ClusterIPNone || svc.Spec.ClusterIP == "" {
		return false
	}
	// Services that ask for another proxy (service.kubernetes.io/service-proxy-name).
	_, other := svc.Labels["service.kubernetes.io/service-proxy-name"]
	return !other
}

// endpointsFor are the IPv4 endpoints of one Service port: the slice
// ports of the same name and protocol, as kube-proxy matches them.
func endpointsFor(sp v1.ServicePort, slices []*discoveryv1.EndpointSlice, nodeName string) []proxy.Endpoint {
	var out []proxy.Endpoint
	proto := sp.Protocol
	if proto == "" {
		proto = v1.ProtocolTCP
	}
	for _, s := range slices {
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		for _, port := range s.Ports {
			name, pproto := "", v1.ProtocolTCP
			if port.Name != nil {
				name = *port.Name
			}
			if port.Protocol != nil {
				pproto = *port.Protocol
			}
			if name != sp.Name || pproto != proto || port.Port == nil {
				continue
			}
			for _, ep := range s.Endpoints {
				ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
				serving := ready
				if ep.Conditions.Serving != nil {
					serving = *ep.Conditions.Serving
				}
				terminating := ep.Conditions.Terminating != nil && *ep.Conditions.Terminating
				local := ep.NodeName != nil && *ep.NodeName == nodeName
				for _, a := range ep.Addresses {
					ip, err := netip.ParseAddr(a)
					if err != nil || !ip.Is4() {
						continue
					}
					out = append(out, proxy.Endpoint{IP: ip, Port: int(*port.Port), Ready: ready, Serving: serving, Terminating: terminating, Local: local})
				}
			}
		}
	}
	return out
}

// dnsModel is the Service as the DNS index needs it: its ready endpoints
// (every one when it publishes not-ready addresses), with their hostnames
// and ports.
func dnsModel(svc *v1.Service, slices []*discoveryv1.EndpointSlice) dns.Service {
	out := dns.Service{Namespace: svc.Namespace, Name: svc.Name, Headless: svc.Spec.ClusterIP == v1.ClusterIPNone}
	if svc.Spec.Type == v1.ServiceTypeExternalName {
		out.ExternalName = svc.Spec.ExternalName
	}
	if !out.Headless {
		for _, s := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
			if ip, err := netip.ParseAddr(s); err == nil && !containsAddr(out.ClusterIPs, ip) {
				out.ClusterIPs = append(out.ClusterIPs, ip)
			}
		}
	}
	for _, sp := range svc.Spec.Ports {
		out.Ports = append(out.Ports, dns.Port{Name: sp.Name, Protocol: protocol(&sp.Protocol), Port: int(sp.Port)})
	}
	for _, s := range slices {
		var ports []dns.Port
		for _, p := range s.Ports {
			if p.Port == nil {
				continue
			}
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			ports = append(ports, dns.Port{Name: name, Protocol: protocol(p.Protocol), Port: int(*p.Port)})
		}
		for _, ep := range s.Endpoints {
			if !svc.Spec.PublishNotReadyAddresses && ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			hostname := ""
			if ep.Hostname != nil {
				hostname = *ep.Hostname
			}
			for _, a := range ep.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil {
					out.Endpoints = append(out.Endpoints, dns.Endpoint{IP: ip, Hostname: hostname, Ports: ports})
				}
			}
		}
	}
	return out
}

func protocol(p *v1.Protocol) string {
	if p == nil || *p == "" {
		return "tcp"
	}
	return strings.ToLower(string(*p))
}

func firstIPv4(ips []string, fallback string) netip.Addr {
	for _, s := range append(ips, fallback) {
		if ip, err := netip.ParseAddr(s); err == nil && ip.Is4() {
			return ip
		}
	}
	return netip.Addr{}
}

func containsAddr(ips []netip.Addr, ip netip.Addr) bool {
	for _, x := range ips {
		if x == ip {
			return true
		}
	}
	return false
}
