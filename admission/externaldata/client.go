package externaldata

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// APIVersion is the apiVersion of what Gatehouse sends a provider.
const APIVersion = Group + "/v1beta1"

// MaxResponseBytes bounds a provider's answer. Gatekeeper reads any size;
// the API server's memory is worth a limit no real provider reaches.
const MaxResponseBytes = 16 << 20

// ProviderRequest is what a provider receives: the keys to look up.
type ProviderRequest struct {
	APIVersion string  `json:"apiVersion"`
	Kind       string  `json:"kind"`
	Request    Request `json:"request"`
}

// Request holds the keys of a ProviderRequest.
type Request struct {
	Keys []string `json:"keys,omitempty"`
}

// ProviderResponse is what a provider answers.
type ProviderResponse struct {
	APIVersion string   `json:"apiVersion,omitempty"`
	Kind       string   `json:"kind,omitempty"`
	Response   Response `json:"response"`
}

// Response holds a provider's items. A systemError fails the whole call;
// an item's error fails only its key. Idempotent answers may be reused
// for mutation (see resolve).
type Response struct {
	Idempotent  bool   `json:"idempotent,omitempty"`
	Items       []Item `json:"items,omitempty"`
	SystemError string `json:"systemError,omitempty"`
}

// Item is the answer for one key: a value or an error.
type Item struct {
	Key   string `json:"key"`
	Value any    `json:"value,omitempty"`
	Error string `json:"error,omitempty"`
}

// Client sends ProviderRequests over TLS 1.3, trusting only each
// provider's caBundle, and offers Gatehouse's client certificate when a
// provider asks for one (mTLS), as Gatekeeper offers its own.
type Client struct {
	// Certificate is the client certificate offered; nil offers none.
	Certificate func() (*tls.Certificate, error)
	// Wrap, when set, wraps each provider's transport, and Identify
	// marks the context of a call to a provider for it (the webhook
	// kit's log and faults: webhooks.Kit.Wrap, webhooks.ProviderCall).
	Wrap     func(http.RoundTripper) http.RoundTripper
	Identify func(ctx context.Context, provider string) context.Context

	mu      sync.Mutex
	clients map[string]cachedClient // by provider name
}

type cachedClient struct {
	provider *Provider
	http     *http.Client
}

func (c *Client) httpClient(p *Provider) *http.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	cc, ok := c.clients[p.Name]
	if ok && cc.provider.sameEndpoint(p) {
		return cc.http
	}
	if ok {
		cc.http.CloseIdleConnections()
	}
	transport := &http.Transport{
		Proxy: nil, // providers are reached directly, as the API server reaches webhooks by URL
		TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS13,
			RootCAs:    p.roots,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if c.Certificate == nil {
					return &tls.Certificate{}, nil
				}
				return c.Certificate()
			},
		},
		MaxIdleConnsPerHost: 10,
		IdleConnTimeout:     90e9,
	}
	var rt http.RoundTripper = transport
	if c.Wrap != nil {
		rt = c.Wrap(rt)
	}
	hc := &http.Client{Transport: rt, Timeout: p.Timeout}
	if c.clients == nil {
		c.clients = map[string]cachedClient{}
	}
	c.clients[p.Name] = cachedClient{provider: p, http: hc}
	return hc
}

// forget drops the HTTP client of a provider that is gone.
func (c *Client) forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.clients[name]; ok {
		cc.http.CloseIdleConnections()
		delete(c.clients, name)
	}
}

// Send POSTs keys to p and returns its answer and HTTP status. As in
// Gatekeeper the status is not judged here, only passed on: the body is
// read whatever it is. Errors carry Gatekeeper's wording.
func (c *Client) Send(ctx context.Context, p *Provider, keys []string) (*ProviderResponse, int, error) {
	body, err := json.Marshal(ProviderRequest{APIVersion: APIVersion, Kind: "ProviderRequest", Request: Request{Keys: keys}})
	if err != nil {
		return nil, http.StatusInternalServerError, fmt.Errorf("failed to marshal external data request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	if c.Identify != nil {
		ctx = c.Identify(ctx, p.Name)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, bytes.NewReader(body))
	if err != nil {
		return nil, http.StatusInternalServerError, fmt.Errorf("failed to create external data request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.httpClient(p).Do(req)
	if err != nil {
		return nil, http.StatusInternalServerError, fmt.Errorf("failed to send external data request: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, http.StatusInternalServerError, fmt.Errorf("failed to read external data response: %w", err)
	}
	if len(answer) > MaxResponseBytes {
		return nil, http.StatusInternalServerError, fmt.Errorf("failed to read external data response: larger than %d bytes", MaxResponseBytes)
	}
	var out ProviderResponse
	if err := json.Unmarshal(answer, &out); err != nil {
		return nil, http.StatusInternalServerError, fmt.Errorf("failed to unmarshal external data response: %w", err)
	}
	return &out, resp.StatusCode, nil
}

// errUnknownProvider is Gatekeeper's message for a provider it does not
// have.
var errUnknownProvider = errors.New("key is not found in provider cache")
