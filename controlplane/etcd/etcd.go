package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// Options configures the embedded member.
type Options struct {
	Dir        string // member data (wal, snap)
	Host       string // listen address, loopback by default
	ClientPort int
	PeerPort   int
	// TLS: the member serves and talks to peers with ServerCert, and
	// requires client certificates signed by TrustedCA.
	ServerCertFile, ServerKeyFile, TrustedCAFile string
	// LogFile receives etcd's own log.
	LogFile string
}

// Embedded is a running single-member etcd cluster.
type Embedded struct {
	etcd      *embed.Etcd
	clientURL string
}

// StartEmbedded starts the member and returns once it serves clients.
func StartEmbedded(ctx context.Context, opts Options) (*Embedded, error) {
	host := opts.Host
	if host == "" {
		host = "127.0.0.1"
	}
	clientURL := url.URL{Scheme: "https", Host: joinHostPort(host, opts.ClientPort)}
	peerURL := url.URL{Scheme: "https", Host: joinHostPort(host, opts.PeerPort)}

	cfg := embed.NewConfig()
	cfg.Name = "gatehouse"
	cfg.Dir = opts.Dir
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// A single member has no peers to wait for: short raft ticks let it
	// elect itself in ~0.1 s on restart instead of ~1 s. (etcd requires the
	// election timeout to be at least 5 ticks.)
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	tlsInfo := transport.TLSInfo{
		CertFile:       opts.ServerCertFile,
		KeyFile:        opts.ServerKeyFile,
		TrustedCAFile:  opts.TrustedCAFile,
		ClientCertAuth: true,
	}
	cfg.ClientTLSInfo = tlsInfo
	cfg.PeerTLSInfo = tlsInfo
	// The kube-apiserver compacts itself every 5 minutes; etcd's own
	// periodic compaction keeps a dormant data dir small too.
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = "1h"
	cfg.Logger = "zap"
	cfg.LogLevel = "warn"
	if opts.LogFile != "" {
		cfg.LogOutputs = []string{opts.LogFile}
	}

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("starting embedded etcd in %s: %w", opts.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: %w", err)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, errors.New("embedded etcd did not become ready within 60s (see its log)")
	}
	return &Embedded{etcd: e, clientURL: clientURL.String()}, nil
}

// ClientURL is the URL the API server uses.
func (e *Embedded) ClientURL() string { return e.clientURL }

// Err reports a fatal error of the running member.
func (e *Embedded) Err() <-chan error { return e.etcd.Err() }

// Close stops the member, flushing what it acknowledged.
func (e *Embedded) Close() { e.etcd.Close() }

func joinHostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

// ClientTLS is what a client needs to reach an etcd cluster over TLS. Empty
// fields mean plain or server-only TLS, as the endpoints' schemes say.
type ClientTLS struct {
	CAFile, CertFile, KeyFile string
}

// WaitReachable returns once one of endpoints answers a status call, logging
// every 5 seconds while it keeps retrying, so a user who pointed Gatehouse at
// a dead cluster sees which endpoints are at fault instead of a silent hang.
func WaitReachable(ctx context.Context, endpoints []string, creds ClientTLS, logger *slog.Logger) error {
	var tlsConfig *tls.Config
	if creds.CAFile != "" || creds.CertFile != "" {
		info := transport.TLSInfo{CertFile: creds.CertFile, KeyFile: creds.KeyFile, TrustedCAFile: creds.CAFile}
		var err error
		if tlsConfig, err = info.ClientConfig(); err != nil {
			return fmt.Errorf("etcd client TLS: %w", err)
		}
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		TLS:         tlsConfig,
		DialTimeout: 2 * time.Second,
		Logger:      nopZap(),
	})
	if err != nil {
		return fmt.Errorf("etcd client for %s: %w", strings.Join(endpoints, ","), err)
	}
	defer client.Close()

	lastLog := time.Time{}
	for {
		var lastErr error
		for _, ep := range endpoints {
			callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := client.Status(callCtx, ep)
			cancel()
			if err == nil {
				return nil
			}
			lastErr = err
		}
		if ctx.Err() == nil && time.Since(lastLog) >= 5*time.Second {
			logger.Warn("etcd unreachable, retrying", "endpoints", strings.Join(endpoints, ","), "error", lastErr)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd unreachable at %s: %w", strings.Join(endpoints, ","), lastErr)
		case <-time.After(time.Second):
		}
	}
}
