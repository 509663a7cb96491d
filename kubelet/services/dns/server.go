package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// Config configures a Server.
type Config struct {
	// Zone is the cluster domain, e.g. "cluster.local".
	Zone string
	// Upstreams are "ip:port" resolvers for other names, tried in order.
	Upstreams []string
	// ForwardTimeout bounds one upstream exchange; 0 means 2 s.
	ForwardTimeout time.Duration
	Logger         *slog.Logger
}

// Server answers DNS queries from an Index and forwards the rest.
type Server struct {
	cfg   Config
	index atomic.Pointer[Index]
}

// NewServer returns a server with an empty index.
func NewServer(cfg Config) *Server {
	if cfg.ForwardTimeout == 0 {
		cfg.ForwardTimeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg}
	s.index.Store(NewIndex(cfg.Zone, nil))
	return s
}

// SetIndex makes ix the answers from now on.
func (s *Server) SetIndex(ix *Index) { s.index.Store(ix) }

// ServeDNS implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	if r.Opcode != dns.OpcodeQuery || len(r.Question) != 1 {
		m := new(dns.Msg)
		rcode := dns.RcodeNotImplemented
		if r.Opcode == dns.OpcodeQuery {
			rcode = dns.RcodeFormatError
		}
		m.SetRcode(r, rcode)
		_ = w.WriteMsg(m)
		return
	}
	ix := s.index.Load()
	answer, extra, rcode, ours := ix.Answer(r.Question[0])
	if !ours {
		s.forward(w, r)
		return
	}
	m := new(dns.Msg)
	m.SetRcode(r, rcode)
	m.Authoritative, m.RecursionAvailable = true, true
	m.Answer, m.Extra = answer, extra
	if len(answer) == 0 {
		m.Ns = []dns.RR{ix.SOA()}
	}
	size := dns.MinMsgSize
	if opt := r.IsEdns0(); opt != nil {
		size = max(int(opt.UDPSize()), dns.MinMsgSize)
		m.SetEdns0(opt.UDPSize(), false)
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// forward asks the upstreams in order, over the client's transport, and
// relays the first answer; SERVFAIL when none answers.
func (s *Server) forward(w dns.ResponseWriter, r *dns.Msg) {
	network := "udp"
	if _, tcp := w.RemoteAddr().(*net.TCPAddr); tcp {
		network = "tcp"
	}
	c := &dns.Client{Net: network, Timeout: s.cfg.ForwardTimeout}
	for _, up := range s.cfg.Upstreams {
		resp, _, err := c.Exchange(r, up)
		if err != nil {
			s.cfg.Logger.Debug("dns: upstream failed", "upstream", up, "name", r.Question[0].Name, "err", err)
			continue
		}
		resp.Id = r.Id
		_ = w.WriteMsg(resp)
		return
	}
	m := new(dns.Msg)
	m.SetRcode(r, dns.RcodeServerFailure)
	m.RecursionAvailable = true
	_ = w.WriteMsg(m)
}

// Listeners are the UDP and TCP sockets of one address.
type Listeners struct {
	UDP net.PacketConn
	TCP net.Listener
}

// Listen opens addr for UDP and TCP. With IP_FREEBIND the address need not
// exist yet: the pod bridge, which holds the node's DNS address, appears
// with the first pod.
func Listen(addr string) (*Listeners, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	ctx := context.Background()
	pc, err := lc.ListenPacket(ctx, "udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("dns: listening on %s/udp: %w", addr, err)
	}
	l, err := lc.Listen(ctx, "tcp4", addr)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("dns: listening on %s/tcp: %w", addr, err)
	}
	return &Listeners{UDP: pc, TCP: l}, nil
}

// Serve answers on ls until ctx is done.
func (s *Server) Serve(ctx context.Context, ls *Listeners) error {
	udp := &dns.Server{PacketConn: ls.UDP, Handler: s}
	tcp := &dns.Server{Listener: ls.TCP, Handler: s, ReadTimeout: 5 * time.Second}
	errs := make(chan error, 2)
	go func() { errs <- udp.ActivateAndServe() }()
	go func() { errs <- tcp.ActivateAndServe() }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = udp.ShutdownContext(sctx)
	_ = tcp.ShutdownContext(sctx)
	ls.UDP.Close()
	ls.TCP.Close()
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("dns: %w", err)
	}
	return nil
}

// HostUpstreams are the resolvers of a resolv.conf as "ip:53", all of
// them: forwarding happens on the host, where loopback resolvers work.
// Addresses in exclude (the cluster DNS itself) are left out, so that a
// host configured to use it does not make a loop.
func HostUpstreams(path string, exclude ...netip.Addr) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dns: host resolvers: %w", err)
	}
	var out []string
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		ip, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		excluded := false
		for _, x := range exclude {
			excluded = excluded || x == ip.Unmap()
		}
		if !excluded {
			out = append(out, netip.AddrPortFrom(ip.Unmap(), 53).String())
		}
	}
	if len(out) == 0 {
		return nil, errors.New("dns: no usable nameserver in " + path)
	}
	return out, nil
}
