package simulated

import (
	"fmt"
	"net/netip"
	"testing"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (f *fixture) ip(t *testing.T, sandboxID string) string {
	t.Helper()
	return f.sandboxStatus(t, sandboxID).GetNetwork().GetIp()
}

func TestIPAllocationAndRelease(t *testing.T) {
	// 10.0.0.0/29: .0 network, .1 gateway, .7 broadcast; .2–.6 usable.
	f := newFixture(t, Options{PodCIDR: "10.0.0.0/29"})
	var ids []string
	for i := 0; i < 5; i++ {
		id, err := f.RunPodSandbox(f.ctx, f.sandboxConfig(fmt.Sprintf("p%d", i), nil), "")
		if err != nil {
			t.Fatalf("sandbox %d: %v", i, err)
		}
		if got, want := f.ip(t, id), fmt.Sprintf("10.0.0.%d", i+2); got != want {
			t.Errorf("sandbox %d: IP %s, want %s", i, got, want)
		}
		ids = append(ids, id)
	}
	_, err := f.RunPodSandbox(f.ctx, f.sandboxConfig("full", nil), "")
	wantCode(t, err, codes.ResourceExhausted, `failed to setup network for sandbox "full_default_uid-full_0": no IP addresses available in pod CIDR 10.0.0.0/29 (5 of 5 in use)`)

	// Stopping a sandbox releases its IP (CRI: StopPodSandbox reclaims
	// network resources); removing a stopped one releases nothing twice.
	if err := f.StopPodSandbox(f.ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	if err := f.RemovePodSandbox(f.ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	// Removing a ready sandbox releases its IP too.
	if err := f.RemovePodSandbox(f.ctx, ids[3]); err != nil {
		t.Fatal(err)
	}
	// The search goes on after the last address given (.6), wrapping to
	// .3 then .5, as host-local does.
	for _, want := range []string{"10.0.0.3", "10.0.0.5"} {
		id, err := f.RunPodSandbox(f.ctx, f.sandboxConfig("again-"+want, nil), "")
		if err != nil {
			t.Fatal(err)
		}
		if got := f.ip(t, id); got != want {
			t.Errorf("IP %s, want %s", got, want)
		}
	}
}

func TestIPRanges(t *testing.T) {
	tests := []struct {
		cidr        string
		capacity    uint64
		first, last string
	}{
		{"10.244.0.0/24", 253, "10.244.0.2", "10.244.0.254"},
		{"10.244.0.17/24", 253, "10.244.0.2", "10.244.0.254"}, // masked
		{"10.0.0.0/30", 1, "10.0.0.2", "10.0.0.2"},
		{"10.0.0.0/31", 0, "", ""},
		{"10.0.0.0/32", 0, "", ""},
		{"fd00::/120", 254, "fd00::2", "fd00::ff"},
		{"fd00::/64", 1<<64 - 1, "fd00::2", "fd00::ffff:ffff:ffff:ffff"},
	}
	for _, tc := range tests {
		t.Run(tc.cidr, func(t *testing.T) {
			r := newIPRange(netip.MustParsePrefix(tc.cidr).Masked())
			if r.capacity != tc.capacity {
				t.Errorf("capacity %d, want %d", r.capacity, tc.capacity)
			}
			if tc.capacity > 0 && (r.first.String() != tc.first || r.last.String() != tc.last) {
				t.Errorf("range %s–%s, want %s–%s", r.first, r.last, tc.first, tc.last)
			}
		})
	}
	for _, bad := range []string{"10.0.0.0/33", "nonsense", "10.0.0.0/24,10.1.0.0/24", ","} {
		if _, err := parsePodCIDRs(bad); err == nil {
			t.Errorf("parsePodCIDRs(%q): no error", bad)
		}
	}
}

func TestDualStackAndHostNetwork(t *testing.T) {
	f := newFixture(t, Options{PodCIDR: "10.1.0.0/24, fd00:10:1::/64"})
	id, err := f.RunPodSandbox(f.ctx, f.sandboxConfig("p", nil), "")
	if err != nil {
		t.Fatal(err)
	}
	nw := f.sandboxStatus(t, id).GetNetwork()
	if nw.GetIp() != "10.1.0.2" || len(nw.GetAdditionalIps()) != 1 || nw.GetAdditionalIps()[0].GetIp() != "fd00:10:1::2" {
		t.Errorf("network %v", nw)
	}

	host := f.sandboxConfig("host", nil)
	host.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
	hid, err := f.RunPodSandbox(f.ctx, host, "")
	if err != nil {
		t.Fatal(err)
	}
	if ip := f.ip(t, hid); ip != "" {
		t.Errorf("host-network sandbox got IP %s", ip)
	}
	if got := f.sandboxStatus(t, hid).GetLinux().GetNamespaces().GetOptions().GetNetwork(); got != runtimeapi.NamespaceMode_NODE {
		t.Errorf("network namespace %s, want NODE echoed", got)
	}
}

func TestPodCIDRFromNodeAgent(t *testing.T) {
	// Without Options.PodCIDR the default applies until the node agent
	// sends the node's CIDR.
	f := newFixture(t, Options{})
	before, _ := f.RunPodSandbox(f.ctx, f.sandboxConfig("before", nil), "")
	if ip := f.ip(t, before); ip != "10.88.0.2" {
		t.Errorf("IP %s, want 10.88.0.2 from the default CIDR", ip)
	}
	err := f.UpdateRuntimeConfig(f.ctx, &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "10.244.3.0/24"}})
	if err != nil {
		t.Fatal(err)
	}
	after, _ := f.RunPodSandbox(f.ctx, f.sandboxConfig("after", nil), "")
	if ip := f.ip(t, after); ip != "10.244.3.2" {
		t.Errorf("IP %s, want 10.244.3.2 from the node's CIDR", ip)
	}
	if ip := f.ip(t, before); ip != "10.88.0.2" {
		t.Errorf("older sandbox's IP changed to %s", ip)
	}
	if err := f.RemovePodSandbox(f.ctx, before); err != nil { // releases an address outside the range
		t.Fatal(err)
	}
	err = f.UpdateRuntimeConfig(f.ctx, &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "bad"}})
	wantCode(t, err, codes.InvalidArgument, "invalid pod CIDR")

	// A configured CIDR is kept.
	g := newFixture(t, Options{PodCIDR: "10.9.0.0/24"})
	if err := g.UpdateRuntimeConfig(g.ctx, &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "10.244.3.0/24"}}); err != nil {
		t.Fatal(err)
	}
	id, _ := g.RunPodSandbox(g.ctx, g.sandboxConfig("p", nil), "")
	if ip := g.ip(t, id); ip != "10.9.0.2" {
		t.Errorf("IP %s, want 10.9.0.2 from Options.PodCIDR", ip)
	}
}
