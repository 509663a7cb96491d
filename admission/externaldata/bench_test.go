package externaldata

import (
	"context"
	"crypto/tls"
	"fmt"
	"testing"
	"time"
)

// BenchmarkQuery is the external_data builtin's cost per call of 4 keys:
// answered from the response cache (Gatekeeper's default, the common case
// at admission) and fetched from a provider on loopback over TLS 1.3 with
// the connection kept alive (the cache off).
func BenchmarkQuery(b *testing.B) {
	_, srv := startProvider(b, tls.NoClientCert)
	keys := []string{"registry.example/a:1", "registry.example/b:1", "registry.example/c:1", "registry.example/d:1"}
	for _, tc := range []struct {
		name string
		ttl  time.Duration
	}{{"cached", DefaultCacheTTL}, {"fetched", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			sys := NewSystem(nil, tc.ttl)
			p, err := Parse(providerObject("images", map[string]any{"url": srv.URL, "timeout": int64(3), "caBundle": pemOf(srv.Certificate())}))
			if err != nil {
				b.Fatal(err)
			}
			sys.Upsert(p)
			ctx := context.Background()
			if a := sys.Query(ctx, "images", keys); len(a.Responses) != len(keys) {
				b.Fatalf("answer %+v", a)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if a := sys.Query(ctx, "images", keys); a.SystemError != "" {
					b.Fatal(a.SystemError)
				}
			}
		})
	}
}

// BenchmarkResolve is assign.externalData's call for one Pod's images.
func BenchmarkResolve(b *testing.B) {
	_, srv := startProvider(b, tls.NoClientCert)
	sys := NewSystem(nil, DefaultCacheTTL)
	p, err := Parse(providerObject("images", map[string]any{"url": srv.URL, "timeout": int64(3), "caBundle": pemOf(srv.Certificate())}))
	if err != nil {
		b.Fatal(err)
	}
	sys.Upsert(p)
	keys := make([]string, 4)
	for i := range keys {
		keys[i] = fmt.Sprintf("registry.example/app%d:1", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, _, err := sys.Resolve(context.Background(), "images", keys); err != nil {
			b.Fatal(err)
		}
	}
}
