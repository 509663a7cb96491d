package dns

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// TTL of every answer, CoreDNS's default.
const TTL = 5

// Service is a Service as DNS sees it.
type Service struct {
	Namespace, Name string
	// ClusterIPs are empty for a headless Service.
	ClusterIPs []netip.Addr
	Headless   bool
	// ExternalName is set for a Service of type ExternalName.
	ExternalName string
	Ports        []Port
	// Endpoints are the ready endpoints (all of them when the Service
	// publishes not-ready addresses).
	Endpoints []Endpoint
}

// Port is a Service or endpoint port.
type Port struct {
	Name string
	// Protocol is tcp, udp or sctp.
	Protocol string
	Port     int
}

// Endpoint is one endpoint address of a Service.
type Endpoint struct {
	IP       netip.Addr
	Hostname string
	Ports    []Port
}

// name is the endpoint's label: its hostname, or its address with dashes,
// as CoreDNS names endpoints.
func (e Endpoint) name() string {
	if e.Hostname != "" {
		return strings.ToLower(e.Hostname)
	}
	s := e.IP.String()
	if e.IP.Is4() {
		return strings.ReplaceAll(s, ".", "-")
	}
	return strings.ReplaceAll(s, ":", "-")
}

// Index answers the names of the cluster zone. It is immutable: a change of
// the cluster makes a new one.
type Index struct {
	zone       string // "cluster.local."
	services   map[string]*Service
	namespaces map[string]bool
	reverse    map[netip.Addr][]string
	serial     uint32
}

// NewIndex indexes services for zone (e.g. "cluster.local").
func NewIndex(zone string, services []Service) *Index {
	ix := &Index{
		zone:       dns.CanonicalName(zone),
		services:   map[string]*Service{},
		namespaces: map[string]bool{},
		reverse:    map[netip.Addr][]string{},
		serial:     uint32(time.Now().Unix()),
	}
	for i := range services {
		svc := &services[i]
		ns, name := strings.ToLower(svc.Namespace), strings.ToLower(svc.Name)
		ix.services[name+"."+ns] = svc
		ix.namespaces[ns] = true
		fqdn := name + "." + ns + ".svc." + ix.zone
		for _, ip := range svc.ClusterIPs {
			ix.addReverse(ip, fqdn)
		}
		for _, ep := range svc.Endpoints {
			ix.addReverse(ep.IP, ep.name()+"."+fqdn)
		}
	}
	return ix
}

func (ix *Index) addReverse(ip netip.Addr, name string) {
	if !slices.Contains(ix.reverse[ip], name) {
		ix.reverse[ip] = append(ix.reverse[ip], name)
	}
}

// Zone is the zone's name, fully qualified.
func (ix *Index) Zone() string { return ix.zone }

// Answer answers q if it is the index's to answer: a name of the zone, or
// a PTR for an address it knows. ours is false for everything else, which
// is forwarded.
func (ix *Index) Answer(q dns.Question) (answer, extra []dns.RR, rcode int, ours bool) {
	name := dns.CanonicalName(q.Name)
	if q.Qtype == dns.TypePTR {
		if ip, ok := reverseAddr(name); ok {
			names := ix.reverse[ip]
			if len(names) == 0 {
				return nil, nil, 0, false
			}
			for _, target := range names {
				answer = append(answer, &dns.PTR{Hdr: hdr(name, dns.TypePTR), Ptr: target})
			}
			return answer, nil, dns.RcodeSuccess, true
		}
	}
	if !dns.IsSubDomain(ix.zone, name) {
		return nil, nil, 0, false
	}
	rel := strings.TrimSuffix(strings.TrimSuffix(name, ix.zone), ".")
	var labels []string
	if rel != "" {
		labels = strings.Split(rel, ".")
	}
	n := len(labels)
	switch {
	case n == 0:
		switch q.Qtype {
		case dns.TypeSOA:
			return []dns.RR{ix.SOA()}, nil, dns.RcodeSuccess, true
		case dns.TypeNS:
			return []dns.RR{&dns.NS{Hdr: hdr(name, dns.TypeNS), Ns: "ns.dns." + ix.zone}}, nil, dns.RcodeSuccess, true
		}
		return nil, nil, dns.RcodeSuccess, true
	case labels[n-1] == "svc":
		answer, extra, rcode = ix.service(name, q.Qtype, labels[:n-1])
		return answer, extra, rcode, true
	case labels[n-1] == "pod":
		answer, rcode = ix.pod(name, q.Qtype, labels[:n-1])
		return answer, nil, rcode, true
	}
	return nil, nil, dns.RcodeNameError, true
}

// service answers <...>.svc.<zone>; labels are the ones before "svc".
func (ix *Index) service(qname string, qtype uint16, labels []string) (answer, extra []dns.RR, rcode int) {
	n := len(labels)
	switch n {
	case 0:
		return nil, nil, dns.RcodeSuccess
	case 1:
		if ix.namespaces[labels[0]] {
			return nil, nil, dns.RcodeSuccess
		}
		return nil, nil, dns.RcodeNameError
	}
	svc := ix.services[labels[n-2]+"."+labels[n-1]]
	if svc == nil {
		return nil, nil, dns.RcodeNameError
	}
	fqdn := labels[n-2] + "." + labels[n-1] + ".svc." + ix.zone
	switch n {
	case 2:
		return ix.serviceRecords(svc, qname, fqdn, qtype)
	case 3:
		// <endpoint>.<svc>.<ns>.svc
		var found bool
		for _, ep := range svc.Endpoints {
			if ep.name() != labels[0] {
				continue
			}
			found = true
			if rr := addrRecord(qname, qtype, ep.IP); rr != nil {
				answer = append(answer, rr)
			}
		}
		if !found {
			return nil, nil, dns.RcodeNameError
		}
		return answer, nil, dns.RcodeSuccess
	case 4:
		// _<port>._<proto>.<svc>.<ns>.svc
		if !strings.HasPrefix(labels[0], "_") || !strings.HasPrefix(labels[1], "_") {
			return nil, nil, dns.RcodeNameError
		}
		port, proto := labels[0][1:], labels[1][1:]
		answer, extra = ix.srv(svc, qname, fqdn, func(p Port) bool {
			return p.Name != "" && strings.EqualFold(p.Name, port) && p.Protocol == proto
		})
		if len(answer) == 0 {
			return nil, nil, dns.RcodeNameError
		}
		if qtype != dns.TypeSRV {
			return nil, nil, dns.RcodeSuccess
		}
		return answer, extra, dns.RcodeSuccess
	}
	return nil, nil, dns.RcodeNameError
}

// serviceRecords answers <svc>.<ns>.svc.<zone> itself.
func (ix *Index) serviceRecords(svc *Service, qname, fqdn string, qtype uint16) (answer, extra []dns.RR, rcode int) {
	if svc.ExternalName != "" {
		return []dns.RR{&dns.CNAME{Hdr: hdr(qname, dns.TypeCNAME), Target: dns.Fqdn(svc.ExternalName)}}, nil, dns.RcodeSuccess
	}
	switch qtype {
	case dns.TypeA, dns.TypeAAAA:
		var ips []netip.Addr
		if svc.Headless {
			for _, ep := range svc.Endpoints {
				ips = append(ips, ep.IP)
			}
		} else {
			ips = svc.ClusterIPs
		}
		seen := map[netip.Addr]bool{}
		for _, ip := range ips {
			if seen[ip] {
				continue
			}
			seen[ip] = true
			if rr := addrRecord(qname, qtype, ip); rr != nil {
				answer = append(answer, rr)
			}
		}
	case dns.TypeSRV:
		answer, extra = ix.srv(svc, qname, fqdn, func(Port) bool { return true })
	}
	return answer, extra, dns.RcodeSuccess
}

// srv is the SRV records of the ports that match: for a Service with a
// ClusterIP one per port, targeting the Service's name; for a headless
// one one per endpoint and port, targeting the endpoint's name. The
// targets' addresses go in the additional section.
func (ix *Index) srv(svc *Service, qname, fqdn string, match func(Port) bool) (answer, extra []dns.RR) {
	type rec struct {
		port   int
		target string
		ip     netip.Addr
	}
	var recs []rec
	if svc.Headless {
		for _, ep := range svc.Endpoints {
			for _, p := range ep.Ports {
				if match(p) {
					recs = append(recs, rec{p.Port, ep.name() + "." + fqdn, ep.IP})
				}
			}
		}
	} else {
		for _, p := range svc.Ports {
			if match(p) {
				for _, ip := range svc.ClusterIPs {
					recs = append(recs, rec{p.Port, fqdn, ip})
				}
			}
		}
	}
	weight := uint16(100)
	if len(recs) > 1 {
		weight = uint16(max(1, 100/len(recs)))
	}
	seenExtra := map[string]bool{}
	for _, r := range recs {
		answer = append(answer, &dns.SRV{Hdr: hdr(qname, dns.TypeSRV), Priority: 0, Weight: weight, Port: uint16(r.port), Target: r.target})
		key := r.target + "/" + r.ip.String()
		if seenExtra[key] {
			continue
		}
		seenExtra[key] = true
		qt := uint16(dns.TypeA)
		if r.ip.Is6() {
			qt = dns.TypeAAAA
		}
		extra = append(extra, addrRecord(r.target, qt, r.ip))
	}
	return answer, extra
}

// pod answers <a-b-c-d>.<ns>.pod.<zone> for any address, as CoreDNS's
// "pods insecure" does.
func (ix *Index) pod(qname string, qtype uint16, labels []string) ([]dns.RR, int) {
	switch len(labels) {
	case 0, 1:
		return nil, dns.RcodeSuccess
	case 2:
		s := labels[0]
		var ip netip.Addr
		var err error
		if strings.Count(s, "-") == 3 {
			ip, err = netip.ParseAddr(strings.ReplaceAll(s, "-", "."))
		} else {
			ip, err = netip.ParseAddr(strings.ReplaceAll(s, "-", ":"))
		}
		if err != nil {
			return nil, dns.RcodeNameError
		}
		if rr := addrRecord(qname, qtype, ip); rr != nil {
			return []dns.RR{rr}, dns.RcodeSuccess
		}
		return nil, dns.RcodeSuccess
	}
	return nil, dns.RcodeNameError
}

// SOA is the zone's SOA record, sent with negative answers.
func (ix *Index) SOA() dns.RR {
	return &dns.SOA{Hdr: hdr(ix.zone, dns.TypeSOA), Ns: "ns.dns." + ix.zone, Mbox: "hostmaster." + ix.zone,
		Serial: ix.serial, Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: TTL}
}

func hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: TTL}
}

// addrRecord is an A or AAAA record of ip if it is of qtype's family.
func addrRecord(name string, qtype uint16, ip netip.Addr) dns.RR {
	switch {
	case qtype == dns.TypeA && ip.Is4():
		return &dns.A{Hdr: hdr(name, dns.TypeA), A: ip.AsSlice()}
	case qtype == dns.TypeAAAA && ip.Is6():
		return &dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: ip.AsSlice()}
	}
	return nil
}

// reverseAddr parses d.c.b.a.in-addr.arpa. and the nibbles of ip6.arpa.
func reverseAddr(name string) (netip.Addr, bool) {
	if rest, ok := strings.CutSuffix(name, ".in-addr.arpa."); ok {
		parts := strings.Split(rest, ".")
		if len(parts) != 4 {
			return netip.Addr{}, false
		}
		var b [4]byte
		for i, p := range parts {
			v, err := strconv.ParseUint(p, 10, 8)
			if err != nil {
				return netip.Addr{}, false
			}
			b[3-i] = byte(v)
		}
		return netip.AddrFrom4(b), true
	}
	if rest, ok := strings.CutSuffix(name, ".ip6.arpa."); ok {
		parts := strings.Split(rest, ".")
		if len(parts) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i, p := range parts {
			v, err := strconv.ParseUint(p, 16, 4)
			if err != nil || len(p) != 1 {
				return netip.Addr{}, false
			}
			idx := 31 - i
			if idx%2 == 0 {
				b[idx/2] |= byte(v) << 4
			} else {
				b[idx/2] |= byte(v)
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}
