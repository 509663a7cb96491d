package proxy

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Table is the nftables table (family ip) that holds every rule of ours;
// nothing else of the host's ruleset is touched.
const Table = "gatehouse"

// DefaultMasqueradeMark is the packet mark bit that asks for masquerading,
// kube-proxy's default (bit 14).
const DefaultMasqueradeMark = 0x4000

// Config is what the rules need besides the Services.
type Config struct {
	// PodCIDR is the node's pod range: traffic from it is this node's
	// pods (kube-proxy's --detect-local-mode=NodeCIDR). Invalid means
	// unknown, and no off-node masquerading rule for ClusterIPs is made.
	PodCIDR netip.Prefix
	// ServiceCIDRs are the cluster's Service ranges: traffic to an address
	// of them that no Service holds is rejected.
	ServiceCIDRs []netip.Prefix
	// MasqueradeMark is the mark bit for masquerading; 0 means
	// DefaultMasqueradeMark.
	MasqueradeMark uint32
}

// Base chains, with numeric priorities: nft 1.0 accepts "dstnat" only on
// the prerouting hook. dstnat is -100, srcnat 100; the filter chains run
// just before DNAT (to see Service addresses) or just after it (to see what
// DNAT left alone).
var baseChains = []struct{ name, spec string }{
	{"filter-input", "type filter hook input priority -110; policy accept;"},
	{"filter-forward", "type filter hook forward priority -110; policy accept;"},
	{"filter-output", "type filter hook output priority -110; policy accept;"},
	{"filter-output-post-dnat", "type filter hook output priority -90; policy accept;"},
	{"nat-prerouting", "type nat hook prerouting priority -100; policy accept;"},
	{"nat-output", "type nat hook output priority -100; policy accept;"},
	{"nat-postrouting", "type nat hook postrouting priority 100; policy accept;"},
}

type chain struct {
	name  string
	rules []string
}

type ruleset struct {
	sets   map[string][]string // name → elements, in order
	chains []*chain
	byName map[string]*chain
}

func (r *ruleset) chain(name string) *chain {
	if c, ok := r.byName[name]; ok {
		return c
	}
	c := &chain{name: name}
	r.chains = append(r.chains, c)
	r.byName[name] = c
	return c
}

func (r *ruleset) rule(chain string, format string, args ...any) {
	c := r.chain(chain)
	c.rules = append(c.rules, fmt.Sprintf(format, args...))
}

func (r *ruleset) element(set string, format string, args ...any) {
	r.sets[set] = append(r.sets[set], fmt.Sprintf(format, args...))
}

// Render returns the nft script that replaces the table with the rules for
// ports, in one transaction: the table is created (so that deleting it
// cannot fail), deleted, and written anew, which also replaces a table left
// by a run that crashed. The text is deterministic for a given input.
func Render(cfg Config, ports []ServicePort) string {
	if cfg.MasqueradeMark == 0 {
		cfg.MasqueradeMark = DefaultMasqueradeMark
	}
	mark := fmt.Sprintf("0x%x", cfg.MasqueradeMark)
	r := &ruleset{sets: map[string][]string{}, byName: map[string]*chain{}}
	for _, bc := range baseChains {
		r.chain(bc.name)
	}
	// Reject (not drop) for Services without endpoints must be in input,
	// forward or output: reject is not allowed in prerouting before Linux
	// 5.9.
	r.rule("filter-input", "ct state new jump nodeport-endpoints-check")
	r.rule("filter-input", "ct state new jump service-endpoints-check")
	r.rule("filter-forward", "ct state new jump service-endpoints-check")
	r.rule("filter-forward", "ct state new jump cluster-ips-check")
	r.rule("filter-output", "ct state new jump service-endpoints-check")
	r.rule("filter-output-post-dnat", "ct state new jump cluster-ips-check")
	r.rule("nat-prerouting", "jump services")
	r.rule("nat-output", "jump services")
	r.rule("nat-postrouting", "jump masquerading")

	// NodePorts answer on every local address, 127.0.0.1 included (with
	// route_localnet=1), as kube-proxy's iptables mode does.
	r.rule("services", "ip daddr . meta l4proto . th dport vmap @service-ips")
	r.rule("services", "fib daddr type local meta l4proto . th dport vmap @service-nodeports")
	r.rule("service-endpoints-check", "ip daddr . meta l4proto . th dport vmap @no-endpoint-services")
	r.rule("nodeport-endpoints-check", "fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports")
	// After DNAT, a packet still addressed to a ClusterIP went to a port
	// the Service does not have, and one addressed elsewhere in the
	// service CIDRs to an address no Service holds.
	r.rule("cluster-ips-check", "ip daddr @cluster-ips goto reject-chain")
	if cidrs := prefixes(cfg.ServiceCIDRs); cidrs != "" {
		r.rule("cluster-ips-check", "ip daddr { %s } goto reject-chain", cidrs)
	}
	// A TCP client gets a reset, anything else ICMP port unreachable:
	// both fail a connection at once instead of after a timeout.
	r.rule("reject-chain", "meta l4proto tcp reject with tcp reset")
	r.rule("reject-chain", "reject")
	r.rule("mark-for-masquerade", "meta mark set meta mark | %s", mark)
	r.rule("masquerading", "meta mark & %s == 0 return", mark)
	r.rule("masquerading", "meta mark set meta mark ^ %s", mark)
	r.rule("masquerading", "masquerade fully-random")
	for _, set := range []string{"cluster-ips", "service-ips", "service-nodeports", "no-endpoint-services", "no-endpoint-nodeports"} {
		r.sets[set] = nil
	}

	ports = slices.Clone(ports)
	sortPorts(ports)
	seenClusterIP := map[netip.Addr]bool{}
	for i := range ports {
		sp := &ports[i]
		if !sp.ClusterIP.Is4() || sp.Port == 0 {
			continue
		}
		if !seenClusterIP[sp.ClusterIP] {
			seenClusterIP[sp.ClusterIP] = true
			r.element("cluster-ips", "%s", sp.ClusterIP)
		}
		r.servicePort(cfg, sp)
	}
	return r.text()
}

// servicePort writes the map elements and chains of one Service port, as
// kube-proxy's nftables proxier does.
func (r *ruleset) servicePort(cfg Config, sp *ServicePort) {
	base := sp.chainBase()
	clusterChain, localChain, externalChain := "service-"+base, "local-"+base, "external-"+base
	cluster, local, hasAny := sp.categorize()
	cluster, local = sortEndpoints(cluster), sortEndpoints(local)
	// With externalTrafficPolicy Local, pods and the host itself still
	// reach every endpoint (they short-circuit to the cluster chain).
	if len(cluster) == 0 && sp.externallyAccessible() && sp.ExternalLocal {
		cluster = sortEndpoints(usable(sp.Endpoints))
	}
	usesCluster, usesLocal := len(cluster) > 0, len(local) > 0

	internalChain, hasInternal := clusterChain, hasAny
	if sp.InternalLocal {
		internalChain, hasInternal = localChain, usesLocal
	}
	externalPolicyChain, hasExternal := clusterChain, hasAny
	if sp.ExternalLocal {
		externalPolicyChain, hasExternal = localChain, usesLocal
	}
	usesExternalChain := hasAny && sp.externallyAccessible()

	// No endpoints at all: reject. Endpoints, but none local for a Local
	// policy: drop, as kube-proxy does.
	internalVerdict, externalVerdict := "goto reject-chain", "goto reject-chain"
	if hasAny {
		internalVerdict, externalVerdict = "drop", "drop"
	}
	key := func(ip netip.Addr) string { return fmt.Sprintf("%s . %s . %d", ip, sp.Protocol, sp.Port) }
	if hasInternal {
		r.element("service-ips", "%s : goto %s", key(sp.ClusterIP), internalChain)
	} else {
		r.element("no-endpoint-services", "%s : %s", key(sp.ClusterIP), internalVerdict)
	}
	for _, ip := range sp.ExternalIPs {
		if !ip.Is4() {
			continue
		}
		if usesExternalChain {
			r.element("service-ips", "%s : goto %s", key(ip), externalChain)
		}
		if !hasExternal {
			r.element("no-endpoint-services", "%s : %s", key(ip), externalVerdict)
		}
	}
	if sp.NodePort != 0 {
		if usesExternalChain {
			r.element("service-nodeports", "%s . %d : goto %s", sp.Protocol, sp.NodePort, externalChain)
		}
		if !hasExternal {
			r.element("no-endpoint-nodeports", "%s . %d : %s", sp.Protocol, sp.NodePort, externalVerdict)
		}
	}

	// Internal traffic from off the node (a route to the service CIDR
	// through this node) is masqueraded so that replies come back here.
	if hasInternal && cfg.PodCIDR.IsValid() {
		r.rule(internalChain, "ip daddr %s %s dport %d ip saddr != %s jump mark-for-masquerade", sp.ClusterIP, sp.Protocol, sp.Port, cfg.PodCIDR)
	}
	if usesExternalChain {
		if !sp.ExternalLocal {
			// The endpoint may be on another node: masquerade.
			r.rule(externalChain, "jump mark-for-masquerade")
		} else {
			if usesCluster && cfg.PodCIDR.IsValid() {
				// Pods reaching a NodePort or external IP are as if they
				// went out to a load balancer and came back: no policy.
				r.rule(externalChain, "ip saddr %s goto %s", cfg.PodCIDR, clusterChain)
			}
			// The host's own traffic has a local source address, which
			// an endpoint could not answer: masquerade it.
			r.rule(externalChain, "fib saddr type local jump mark-for-masquerade")
			if usesCluster {
				r.rule(externalChain, "fib saddr type local goto %s", clusterChain)
			}
		}
		if hasExternal {
			r.rule(externalChain, "goto %s", externalPolicyChain)
		} else {
			// Kept so that the chain is never empty of a decision: the
			// rest falls through to the no-endpoint drop in filter.
			r.chain(externalChain)
		}
	}
	if usesCluster && (usesExternalChain || !sp.InternalLocal) {
		r.balance(clusterChain, base, sp.Protocol, cluster)
	}
	if usesLocal {
		r.balance(localChain, base, sp.Protocol, local)
	}
}

// balance sends a new connection to one of eps at random; conntrack keeps
// the rest of the connection on it.
func (r *ruleset) balance(chainName, base, protocol string, eps []Endpoint) {
	var elems []string
	for i, ep := range eps {
		epChain := "endpoint-" + base + "__" + ep.IP.String() + "/" + strconv.Itoa(ep.Port)
		elems = append(elems, fmt.Sprintf("%d : goto %s", i, epChain))
		if _, done := r.byName[epChain]; done {
			continue
		}
		// Hairpin: a pod reaching itself through its Service must not see
		// its own address as the source of the answer.
		r.rule(epChain, "ip saddr %s jump mark-for-masquerade", ep.IP)
		r.rule(epChain, "meta l4proto %s dnat to %s", protocol, ep)
	}
	r.rule(chainName, "numgen random mod %d vmap { %s }", len(eps), strings.Join(elems, ", "))
}

var setTypes = map[string]string{
	"cluster-ips":           "ipv4_addr",
	"service-ips":           "ipv4_addr . inet_proto . inet_service : verdict",
	"service-nodeports":     "inet_proto . inet_service : verdict",
	"no-endpoint-services":  "ipv4_addr . inet_proto . inet_service : verdict",
	"no-endpoint-nodeports": "inet_proto . inet_service : verdict",
}

func (r *ruleset) text() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("table ip %s", Table)
	w("delete table ip %s", Table)
	w("table ip %s {", Table)
	w("\tcomment \"Service routing of the Gatehouse node agent; replaced whole at every sync\"")
	for _, name := range []string{"cluster-ips", "service-ips", "service-nodeports", "no-endpoint-services", "no-endpoint-nodeports"} {
		kind := "map"
		if !strings.Contains(setTypes[name], ":") {
			kind = "set"
		}
		w("\t%s %s {", kind, name)
		w("\t\ttype %s", setTypes[name])
		if elems := r.sets[name]; len(elems) > 0 {
			w("\t\telements = {")
			for i, e := range elems {
				sep := ","
				if i == len(elems)-1 {
					sep = ""
				}
				w("\t\t\t%s%s", e, sep)
			}
			w("\t\t}")
		}
		w("\t}")
	}
	specs := map[string]string{}
	for _, bc := range baseChains {
		specs[bc.name] = bc.spec
	}
	for _, c := range r.chains {
		w("\tchain %s {", c.name)
		if spec, ok := specs[c.name]; ok {
			w("\t\t%s", spec)
		}
		for _, rule := range c.rules {
			w("\t\t%s", rule)
		}
		w("\t}")
	}
	w("}")
	return b.String()
}

func prefixes(ps []netip.Prefix) string {
	var out []string
	for _, p := range ps {
		if p.Addr().Is4() {
			out = append(out, p.Masked().String())
		}
	}
	return strings.Join(out, ", ")
}
