package simulated

import (
	"fmt"
	"math"
	"net/netip"
	"strings"
)

// DefaultPodCIDR is used when Options.PodCIDR is empty and the node agent has
// not sent one through UpdateRuntimeConfig. It is containerd's default CNI
// network.
const DefaultPodCIDR = "10.88.0.0/16"

// ipRange hands out the host addresses of one CIDR the way CNI's host-local
// IPAM does: the network address, the first address (the bridge's gateway)
// and, for IPv4, the broadcast address are never given out, and the search
// for a free address starts after the last one allocated, so a released
// address is reused only after the range has wrapped around.
type ipRange struct {
	prefix      netip.Prefix
	first, last netip.Addr
	capacity    uint64 // saturates at MaxUint64
	inUse       uint64
	lastAlloc   netip.Addr // zero before the first allocation
}

// ipAllocator allocates one address per sandbox from each range (two ranges
// for a dual-stack CIDR list such as "10.244.0.0/24,fd00:10:244::/64").
type ipAllocator struct {
	cidrs  string
	ranges []*ipRange
	owners map[netip.Addr]string // address → sandbox ID
}

// parsePodCIDRs parses a comma-separated list of at most one IPv4 and one
// IPv6 CIDR, as the kubelet sends in UpdateRuntimeConfig.
func parsePodCIDRs(s string) ([]*ipRange, error) {
	var ranges []*ipRange
	seen := map[bool]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, fmt.Errorf("invalid pod CIDR %q: %w", part, err)
		}
		p = p.Masked()
		if seen[p.Addr().Is4()] {
			return nil, fmt.Errorf("invalid pod CIDR list %q: at most one IPv4 and one IPv6 CIDR", s)
		}
		seen[p.Addr().Is4()] = true
		ranges = append(ranges, newIPRange(p))
	}
	if len(ranges) == 0 {
		return nil, fmt.Errorf("invalid pod CIDR %q: empty", s)
	}
	return ranges, nil
}

func newIPRange(p netip.Prefix) *ipRange {
	r := &ipRange{prefix: p}
	hostBits := p.Addr().BitLen() - p.Bits()
	reserved := uint64(2) // network address and gateway
	if p.Addr().Is4() {
		reserved = 3 // and broadcast
	}
	switch {
	case hostBits >= 64:
		r.capacity = math.MaxUint64
	case uint64(1)<<hostBits <= reserved:
		r.capacity = 0
	default:
		r.capacity = uint64(1)<<hostBits - reserved
	}
	if r.capacity == 0 {
		return r
	}
	r.first = p.Addr().Next().Next()
	last := lastAddr(p)
	if p.Addr().Is4() {
		last = last.Prev()
	}
	r.last = last
	return r
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (r *ipRange) String() string {
	if r.capacity == 0 {
		return r.prefix.String() + " (no usable addresses)"
	}
	return r.prefix.String()
}

func newIPAllocator(cidrs string) (*ipAllocator, error) {
	ranges, err := parsePodCIDRs(cidrs)
	if err != nil {
		return nil, err
	}
	return &ipAllocator{cidrs: cidrs, ranges: ranges, owners: map[netip.Addr]string{}}, nil
}

func emptyIPAllocator() *ipAllocator { return &ipAllocator{owners: map[netip.Addr]string{}} }

// setRanges replaces the ranges new addresses come from. Addresses already
// handed out stay with their sandboxes until released.
func (a *ipAllocator) setRanges(cidrs string, ranges []*ipRange) {
	for _, r := range ranges {
		for addr := range a.owners {
			if r.prefix.Contains(addr) && !addr.Less(r.first) && !r.last.Less(addr) {
				r.inUse++
			}
		}
	}
	a.cidrs, a.ranges = cidrs, ranges
}

// allocate gives the sandbox one address from each range. Either all are
// allocated or none is.
func (a *ipAllocator) allocate(sandboxID string) ([]netip.Addr, error) {
	var got []netip.Addr
	for _, r := range a.ranges {
		addr, ok := r.next(a.owners)
		if !ok {
			a.release(got)
			return nil, fmt.Errorf("no IP addresses available in pod CIDR %s (%d of %d in use)", r, r.inUse, r.capacity)
		}
		a.owners[addr] = sandboxID
		r.inUse++
		r.lastAlloc = addr
		got = append(got, addr)
	}
	return got, nil
}

func (a *ipAllocator) release(addrs []netip.Addr) {
	for _, addr := range addrs {
		if _, ok := a.owners[addr]; !ok {
			continue
		}
		delete(a.owners, addr)
		for _, r := range a.ranges {
			if r.capacity > 0 && r.prefix.Contains(addr) && !addr.Less(r.first) && !r.last.Less(addr) {
				r.inUse--
			}
		}
	}
}

// next finds a free address after the last one allocated, wrapping around.
// If fewer addresses than the capacity are in use, one of the next
// len(owners)+1 candidates is free, so the search is bounded.
func (r *ipRange) next(owners map[netip.Addr]string) (netip.Addr, bool) {
	if r.inUse >= r.capacity {
		return netip.Addr{}, false
	}
	cand := r.first
	if r.lastAlloc.IsValid() && r.prefix.Contains(r.lastAlloc) {
		cand = r.advance(r.lastAlloc)
	}
	for i := 0; i <= len(owners); i++ {
		if _, used := owners[cand]; !used {
			return cand, true
		}
		cand = r.advance(cand)
	}
	return netip.Addr{}, false
}

func (r *ipRange) advance(a netip.Addr) netip.Addr {
	if !a.Less(r.last) {
		return r.first
	}
	return a.Next()
}
