package webhooks

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkTransport is the cost the kit adds to one webhook call on
// loopback: recording (request and answer kept, one exchange) against the
// same call without an identity, which passes through untouched.
func BenchmarkTransport(b *testing.B) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, answer("u-1", true, ""))
	}))
	defer s.Close()
	kit, _ := New(Options{})
	rt := kit.Wrap(http.DefaultTransport)
	for _, bc := range []struct {
		name string
		ctx  context.Context
	}{
		{"passthrough", context.Background()},
		{"recorded", context.WithValue(context.Background(), identityKey{}, validating)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				req, _ := http.NewRequestWithContext(bc.ctx, http.MethodPost, s.URL, strings.NewReader(reviewRequest))
				resp, err := rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
