package proxy

import (
	"context"
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func ep(addr string, ready, serving, terminating, local bool) Endpoint {
	ap := netip.MustParseAddrPort(addr)
	return Endpoint{IP: ap.Addr(), Port: int(ap.Port()), Ready: ready, Serving: serving, Terminating: terminating, Local: local}
}

// testPorts covers each case of the rules: endpoints on and off the node,
// not ready, terminating only, none, NodePort, externalIPs, both traffic
// policies, UDP, and the DNS Service routed to the node's own server.
func testPorts() []ServicePort {
	ip := netip.MustParseAddr
	return []ServicePort{
		{Namespace: "default", Name: "kubernetes", PortName: "https", Protocol: "tcp", ClusterIP: ip("10.96.0.1"), Port: 443,
			Endpoints: []Endpoint{ep("192.0.2.2:6443", true, true, false, false)}},
		{Namespace: "default", Name: "web", PortName: "http", Protocol: "tcp", ClusterIP: ip("10.96.0.20"), Port: 80, NodePort: 30080,
			Endpoints: []Endpoint{
				ep("10.244.0.7:8080", true, true, false, true),
				ep("10.244.0.6:8080", false, false, false, true),
				ep("10.244.0.5:8080", true, true, false, true),
			}},
		{Namespace: "default", Name: "empty", Protocol: "tcp", ClusterIP: ip("10.96.0.30"), Port: 80, NodePort: 30081},
		{Namespace: "default", Name: "draining", PortName: "dns", Protocol: "udp", ClusterIP: ip("10.96.0.40"), Port: 53,
			Endpoints: []Endpoint{ep("10.244.0.9:53", false, true, true, true), ep("10.244.0.10:53", false, false, true, true)}},
		{Namespace: "default", Name: "local", Protocol: "tcp", ClusterIP: ip("10.96.0.50"), Port: 8080, NodePort: 30082,
			ExternalIPs: []netip.Addr{ip("203.0.113.10")}, ExternalLocal: true,
			Endpoints: []Endpoint{ep("10.244.1.5:80", true, true, false, false), ep("10.244.0.8:80", true, true, false, true)}},
		{Namespace: "default", Name: "local-none", Protocol: "tcp", ClusterIP: ip("10.96.0.60"), Port: 80, NodePort: 30083,
			InternalLocal: true, ExternalLocal: true,
			Endpoints: []Endpoint{ep("10.244.1.6:80", true, true, false, false)}},
		{Namespace: "kube-system", Name: "kube-dns", PortName: "dns", Protocol: "udp", ClusterIP: ip("10.96.0.10"), Port: 53,
			Endpoints: []Endpoint{ep("10.244.0.1:53", true, true, false, true)}},
		{Namespace: "kube-system", Name: "kube-dns", PortName: "dns-tcp", Protocol: "tcp", ClusterIP: ip("10.96.0.10"), Port: 53,
			Endpoints: []Endpoint{ep("10.244.0.1:53", true, true, false, true)}},
		// Headless: no rules.
		{Namespace: "default", Name: "headless", Protocol: "tcp", Port: 80, Endpoints: []Endpoint{ep("10.244.0.5:80", true, true, false, true)}},
	}
}

func testConfig() Config {
	return Config{PodCIDR: netip.MustParsePrefix("10.244.0.0/24"), ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}}
}

func TestRenderGolden(t *testing.T) {
	got := Render(testConfig(), testPorts())
	golden := filepath.Join("testdata", "rules.nft")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test -run TestRenderGolden -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("rules differ from %s (go test -update rewrites it after review):\n%s", golden, got)
	}
	// The same input in another order gives the same text.
	ports := testPorts()
	for i, j := 0, len(ports)-1; i < j; i, j = i+1, j-1 {
		ports[i], ports[j] = ports[j], ports[i]
	}
	if again := Render(testConfig(), ports); again != got {
		t.Errorf("the rules depend on the order of the Services")
	}
}

// TestRenderCases checks the decisions the golden file records, one by one.
func TestRenderCases(t *testing.T) {
	text := Render(testConfig(), testPorts())
	for _, tc := range []struct {
		name string
		want []string
		not  []string
	}{
		{"ready endpoints only, at random", []string{
			"numgen random mod 2 vmap { 0 : goto endpoint-default/web/tcp/http__10.244.0.5/8080, 1 : goto endpoint-default/web/tcp/http__10.244.0.7/8080 }",
		}, []string{"10.244.0.6"}},
		{"no endpoints: reject ClusterIP and NodePort", []string{
			"10.96.0.30 . tcp . 80 : goto reject-chain", "tcp . 30081 : goto reject-chain",
		}, []string{"10.96.0.30 . tcp . 80 : goto service-"}},
		{"serving terminating endpoints when none is ready", []string{
			"numgen random mod 1 vmap { 0 : goto endpoint-default/draining/udp/dns__10.244.0.9/53 }",
		}, []string{"10.244.0.10"}},
		{"externalTrafficPolicy Local", []string{
			"tcp . 30082 : goto external-default/local/tcp/8080",
			"ip saddr 10.244.0.0/24 goto service-default/local/tcp/8080",
			"fib saddr type local jump mark-for-masquerade",
			"goto local-default/local/tcp/8080",
			"numgen random mod 1 vmap { 0 : goto endpoint-default/local/tcp/8080__10.244.0.8/80 }",
		}, nil},
		{"Local policies without a local endpoint drop", []string{
			"10.96.0.60 . tcp . 80 : drop", "tcp . 30083 : drop",
		}, nil},
		{"hairpin and off-node masquerading", []string{
			"ip saddr 10.244.0.5 jump mark-for-masquerade",
			"ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.244.0.0/24 jump mark-for-masquerade",
		}, nil},
		{"NodePort traffic is masqueraded under Cluster policy", []string{
			"chain external-default/web/tcp/http {\n\t\tjump mark-for-masquerade\n\t\tgoto service-default/web/tcp/http\n\t}",
		}, nil},
		{"DNS to the node's own server", []string{
			"10.96.0.10 . udp . 53 : goto service-kube-system/kube-dns/udp/dns",
			"meta l4proto tcp dnat to 10.244.0.1:53",
		}, nil},
		{"unallocated service addresses rejected", []string{
			"ip daddr { 10.96.0.0/12 } goto reject-chain",
		}, nil},
		{"headless Services have no rules", nil, []string{"headless"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("missing %q", w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(text, n) {
					t.Errorf("unexpected %q", n)
				}
			}
		})
	}
}

// TestRenderValid has nft itself check the script (as root, with nft).
func TestRenderValid(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("nft --check needs root")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("no nft binary (package nftables)")
	}
	for name, ports := range map[string][]ServicePort{"all cases": testPorts(), "no services": nil} {
		if err := (NFT{}).Check(context.Background(), Render(testConfig(), ports)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
