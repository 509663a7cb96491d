package proxy

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
)

// ServicePort is one port of one Service with its endpoints: what the rules
// are made of.
type ServicePort struct {
	Namespace, Name string
	// PortName is the Service port's name ("" for a single unnamed port).
	PortName string
	// Protocol is tcp, udp or sctp.
	Protocol string
	// ClusterIP is the Service's IPv4 ClusterIP; the zero Addr for none.
	ClusterIP   netip.Addr
	Port        int
	NodePort    int
	ExternalIPs []netip.Addr
	// InternalLocal and ExternalLocal are internalTrafficPolicy and
	// externalTrafficPolicy Local.
	InternalLocal, ExternalLocal bool
	Endpoints                    []Endpoint
}

// Endpoint is one endpoint of a ServicePort, as an EndpointSlice gives it.
type Endpoint struct {
	IP   netip.Addr
	Port int
	// Ready, Serving and Terminating are the EndpointSlice conditions.
	Ready, Serving, Terminating bool
	// Local says that the endpoint runs on this node.
	Local bool
}

func (e Endpoint) String() string {
	return netip.AddrPortFrom(e.IP, uint16(e.Port)).String()
}

// externallyAccessible: NodePort or externalIPs route into the Service.
func (sp *ServicePort) externallyAccessible() bool {
	return sp.NodePort != 0 || len(sp.ExternalIPs) > 0
}

func (sp *ServicePort) usesClusterEndpoints() bool {
	return !sp.InternalLocal || (sp.externallyAccessible() && !sp.ExternalLocal)
}

func (sp *ServicePort) usesLocalEndpoints() bool {
	return sp.InternalLocal || (sp.externallyAccessible() && sp.ExternalLocal)
}

// usable are the ready endpoints of eps or, when none is ready, the
// serving and terminating ones, as kube-proxy picks them (so that a rolling
// update does not drop traffic while the old pods drain).
func usable(eps []Endpoint) []Endpoint {
	var ready, terminating []Endpoint
	for _, ep := range eps {
		switch {
		case ep.Ready:
			ready = append(ready, ep)
		case ep.Serving && ep.Terminating:
			terminating = append(terminating, ep)
		}
	}
	if len(ready) > 0 {
		return ready
	}
	return terminating
}

// categorize splits the endpoints as kube-proxy's CategorizeEndpoints
// does (without topology hints): those for Cluster policy, those for Local
// policy, and whether the Service has usable endpoints anywhere.
func (sp *ServicePort) categorize() (cluster, local []Endpoint, hasAny bool) {
	all := usable(sp.Endpoints)
	if sp.usesClusterEndpoints() {
		cluster = all
	}
	if sp.usesLocalEndpoints() {
		var mine []Endpoint
		for _, ep := range sp.Endpoints {
			if ep.Local {
				mine = append(mine, ep)
			}
		}
		local = usable(mine)
	}
	return cluster, local, len(all) > 0
}

// chainBase names the chains of a ServicePort: namespace, name, protocol
// and port name are DNS labels, so they are valid in an nftables chain
// name as they are; "/" keeps them apart.
func (sp *ServicePort) chainBase() string {
	port := sp.PortName
	if port == "" {
		port = strconv.Itoa(sp.Port)
	}
	return sp.Namespace + "/" + sp.Name + "/" + sp.Protocol + "/" + port
}

func (sp *ServicePort) String() string {
	return sp.Namespace + "/" + sp.Name + ":" + sp.PortName
}

func sortPorts(ports []ServicePort) {
	slices.SortFunc(ports, func(a, b ServicePort) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name),
			cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Port, b.Port), cmp.Compare(a.PortName, b.PortName))
	})
}

func sortEndpoints(eps []Endpoint) []Endpoint {
	eps = slices.Clone(eps)
	slices.SortFunc(eps, func(a, b Endpoint) int {
		return cmp.Or(a.IP.Compare(b.IP), cmp.Compare(a.Port, b.Port))
	})
	return slices.CompactFunc(eps, func(a, b Endpoint) bool { return a.IP == b.IP && a.Port == b.Port })
}
