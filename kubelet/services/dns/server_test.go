package dns

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// testServices: a ClusterIP Service, a headless one with a named and an
// unnamed endpoint, an ExternalName one, in two namespaces.
func testServices() []Service {
	return []Service{
		{Namespace: "default", Name: "web", ClusterIPs: []netip.Addr{addr("10.96.0.20")},
			Ports:     []Port{{Name: "http", Protocol: "tcp", Port: 80}, {Name: "metrics", Protocol: "tcp", Port: 9090}},
			Endpoints: []Endpoint{{IP: addr("10.244.0.5"), Ports: []Port{{Name: "http", Protocol: "tcp", Port: 8080}}}}},
		{Namespace: "default", Name: "db", Headless: true,
			Ports: []Port{{Name: "pg", Protocol: "tcp", Port: 5432}},
			Endpoints: []Endpoint{
				{IP: addr("10.244.0.7"), Hostname: "db-0", Ports: []Port{{Name: "pg", Protocol: "tcp", Port: 5432}}},
				{IP: addr("10.244.0.8"), Ports: []Port{{Name: "pg", Protocol: "tcp", Port: 5432}}},
			}},
		{Namespace: "apps", Name: "search", ExternalName: "search.example.com"},
	}
}

// startServer runs a Server with the test index on loopback, forwarding
// to upstreams.
func startServer(t *testing.T, upstreams ...string) string {
	t.Helper()
	s := NewServer(Config{Zone: "cluster.local", Upstreams: upstreams})
	s.SetIndex(NewIndex("cluster.local", testServices()))
	// One port for UDP and TCP: a free UDP port whose TCP twin is free.
	var ls *Listeners
	var port int
	for attempt := 0; ls == nil; attempt++ {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = pc.LocalAddr().(*net.UDPAddr).Port
		pc.Close()
		if ls, err = Listen(pc.LocalAddr().String()); err != nil && attempt == 10 {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ls) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return netip.AddrPortFrom(addr("127.0.0.1"), uint16(port)).String()
}

func query(t *testing.T, server, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: network}
	resp, _, err := c.Exchange(m, server)
	if err != nil {
		t.Fatalf("%s %s: %v", name, dns.TypeToString[qtype], err)
	}
	return resp
}

// rrs are the records of a section as "name type value" strings.
func rrs(section []dns.RR) []string {
	var out []string
	for _, rr := range section {
		f := strings.Fields(rr.String())
		out = append(out, f[0]+" "+f[3]+" "+strings.Join(f[4:], " "))
	}
	slices.Sort(out)
	return out
}

func TestAnswers(t *testing.T) {
	server := startServer(t)
	for _, tc := range []struct {
		name   string
		qname  string
		qtype  uint16
		rcode  int
		answer []string
		extra  []string
	}{
		{"service A", "web.default.svc.cluster.local", dns.TypeA, dns.RcodeSuccess,
			[]string{"web.default.svc.cluster.local. A 10.96.0.20"}, nil},
		{"case does not matter", "WEB.Default.svc.Cluster.Local", dns.TypeA, dns.RcodeSuccess,
			[]string{"web.default.svc.cluster.local. A 10.96.0.20"}, nil},
		{"headless A: the endpoints", "db.default.svc.cluster.local", dns.TypeA, dns.RcodeSuccess,
			[]string{"db.default.svc.cluster.local. A 10.244.0.7", "db.default.svc.cluster.local. A 10.244.0.8"}, nil},
		{"endpoint by hostname", "db-0.db.default.svc.cluster.local", dns.TypeA, dns.RcodeSuccess,
			[]string{"db-0.db.default.svc.cluster.local. A 10.244.0.7"}, nil},
		{"endpoint by address", "10-244-0-8.db.default.svc.cluster.local", dns.TypeA, dns.RcodeSuccess,
			[]string{"10-244-0-8.db.default.svc.cluster.local. A 10.244.0.8"}, nil},
		{"SRV of a named port", "_http._tcp.web.default.svc.cluster.local", dns.TypeSRV, dns.RcodeSuccess,
			[]string{"_http._tcp.web.default.svc.cluster.local. SRV 0 100 80 web.default.svc.cluster.local."},
			[]string{"web.default.svc.cluster.local. A 10.96.0.20"}},
		{"SRV of every port", "web.default.svc.cluster.local", dns.TypeSRV, dns.RcodeSuccess,
			[]string{"web.default.svc.cluster.local. SRV 0 50 80 web.default.svc.cluster.local.", "web.default.svc.cluster.local. SRV 0 50 9090 web.default.svc.cluster.local."},
			[]string{"web.default.svc.cluster.local. A 10.96.0.20"}},
		{"headless SRV: one per endpoint", "_pg._tcp.db.default.svc.cluster.local", dns.TypeSRV, dns.RcodeSuccess,
			[]string{"_pg._tcp.db.default.svc.cluster.local. SRV 0 50 5432 10-244-0-8.db.default.svc.cluster.local.", "_pg._tcp.db.default.svc.cluster.local. SRV 0 50 5432 db-0.db.default.svc.cluster.local."},
			[]string{"10-244-0-8.db.default.svc.cluster.local. A 10.244.0.8", "db-0.db.default.svc.cluster.local. A 10.244.0.7"}},
		{"SRV of a port the Service lacks", "_dns._udp.web.default.svc.cluster.local", dns.TypeSRV, dns.RcodeNameError, nil, nil},
		{"pod", "10-244-0-9.default.pod.cluster.local", dns.TypeA, dns.RcodeSuccess,
			[]string{"10-244-0-9.default.pod.cluster.local. A 10.244.0.9"}, nil},
		{"pod name that is no address", "web.default.pod.cluster.local", dns.TypeA, dns.RcodeNameError, nil, nil},
		{"ExternalName", "search.apps.svc.cluster.local", dns.TypeA, dns.RcodeSuccess,
			[]string{"search.apps.svc.cluster.local. CNAME search.example.com."}, nil},
		{"PTR of a ClusterIP", "20.0.96.10.in-addr.arpa", dns.TypePTR, dns.RcodeSuccess,
			[]string{"20.0.96.10.in-addr.arpa. PTR web.default.svc.cluster.local."}, nil},
		{"PTR of an endpoint", "7.0.244.10.in-addr.arpa", dns.TypePTR, dns.RcodeSuccess,
			[]string{"7.0.244.10.in-addr.arpa. PTR db-0.db.default.svc.cluster.local."}, nil},
		{"no such Service: NXDOMAIN", "nope.default.svc.cluster.local", dns.TypeA, dns.RcodeNameError, nil, nil},
		{"no such namespace: NXDOMAIN", "web.nope.svc.cluster.local", dns.TypeA, dns.RcodeNameError, nil, nil},
		{"namespace: NODATA", "default.svc.cluster.local", dns.TypeA, dns.RcodeSuccess, nil, nil},
		{"no AAAA: NODATA", "web.default.svc.cluster.local", dns.TypeAAAA, dns.RcodeSuccess, nil, nil},
		{"unknown subtree: NXDOMAIN", "foo.cluster.local", dns.TypeA, dns.RcodeNameError, nil, nil},
		{"zone SOA", "cluster.local", dns.TypeSOA, dns.RcodeSuccess,
			[]string{"cluster.local. SOA ns.dns.cluster.local. hostmaster.cluster.local. SERIAL 7200 1800 86400 5"}, nil},
	} {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(tc.name+"/"+network, func(t *testing.T) {
				resp := query(t, server, network, tc.qname, tc.qtype)
				if resp.Rcode != tc.rcode {
					t.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.rcode])
				}
				if !resp.Authoritative {
					t.Errorf("answer of the cluster zone not authoritative")
				}
				got := rrs(resp.Answer)
				for i, s := range got {
					if strings.Contains(s, " SOA ") {
						f := strings.Fields(s)
						f[4] = "SERIAL"
						got[i] = strings.Join(f, " ")
					}
				}
				if !slices.Equal(got, tc.answer) {
					t.Errorf("answer %q, want %q", got, tc.answer)
				}
				if tc.extra != nil && !slices.Equal(rrs(resp.Extra), tc.extra) {
					t.Errorf("extra %q, want %q", rrs(resp.Extra), tc.extra)
				}
				// Negative answers carry the SOA, so resolvers cache them.
				if len(tc.answer) == 0 {
					if len(resp.Ns) != 1 || resp.Ns[0].Header().Rrtype != dns.TypeSOA {
						t.Errorf("negative answer without the SOA in authority: %v", resp.Ns)
					}
				}
			})
		}
	}
}

// fakeUpstream answers every A query with 192.0.2.99.
func fakeUpstream(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP("192.0.2.99")}}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

func TestForward(t *testing.T) {
	up := fakeUpstream(t)
	// A dead upstream first: the next one answers.
	dead, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().String()
	dead.Close()
	server := startServer(t, deadAddr, up)
	resp := query(t, server, "udp", "example.com", dns.TypeA)
	if got := rrs(resp.Answer); resp.Rcode != dns.RcodeSuccess || !slices.Equal(got, []string{"example.com. A 192.0.2.99"}) {
		t.Errorf("forwarded answer: %s %q", dns.RcodeToString[resp.Rcode], got)
	}
	// A PTR the index does not know is forwarded too.
	if resp := query(t, server, "udp", "99.2.0.192.in-addr.arpa", dns.TypePTR); resp.Rcode != dns.RcodeSuccess || resp.Authoritative {
		t.Errorf("unknown PTR was not forwarded: %v", resp)
	}

	only := startServer(t, deadAddr)
	if resp := query(t, only, "udp", "example.com", dns.TypeA); resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("no upstream answers: %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
	}
}

func TestHostUpstreams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	conf := "# comment\nsearch example.com\nnameserver 127.0.0.53\nnameserver 10.96.0.10\nnameserver 192.0.2.1\noptions ndots:2\n"
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := HostUpstreams(path, addr("10.96.0.10"))
	if err != nil {
		t.Fatal(err)
	}
	// Loopback stays: the server forwards from the host.
	if want := []string{"127.0.0.53:53", "192.0.2.1:53"}; !slices.Equal(got, want) {
		t.Errorf("upstreams %q, want %q", got, want)
	}
}
