package externaldata

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/admission/constraint"
	"github.com/gatehouse-dev/gatehouse/admission/mutation"
	"github.com/gatehouse-dev/gatehouse/admission/trace"
)

var (
	_ constraint.ExternalData = &System{}
	_ mutation.ExternalData   = &System{}
)

// System holds the Providers in force, the client that calls them and the
// response cache, and answers the external_data builtin.
type System struct {
	client *Client
	cache  *responseCache

	mu        sync.RWMutex
	providers map[string]*Provider
	// stubs answer for providers in tests (gatehouse test), by name.
	stubs map[string]*Response
}

// NewSystem returns a System without providers; answers are cached for
// ttl (0 turns the cache off). client may be nil: no client certificate.
func NewSystem(client *Client, ttl time.Duration) *System {
	ensureMetricsRegistered()
	if client == nil {
		client = &Client{}
	}
	return &System{client: client, cache: newResponseCache(ttl, time.Now), providers: map[string]*Provider{}}
}

// Stub makes answer stand in for the provider name, whether or not a
// Provider of that name exists: calls get the answer's items for the keys
// asked (keys it lacks are left out, as a provider may), its systemError
// and its idempotent flag, with HTTP status 200, and nothing is sent or
// cached. For tests of policies that use external data.
func (s *System) Stub(name string, answer Response) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stubs == nil {
		s.stubs = map[string]*Response{}
	}
	s.stubs[name] = &answer
}

// ask sends keys to the provider named name, or to its stub; ok is false
// when there is neither.
func (s *System) ask(ctx context.Context, name string, keys []string) (resp *ProviderResponse, code int, stubbed, ok bool, err error) {
	s.mu.RLock()
	stub, isStub := s.stubs[name]
	p, isProvider := s.providers[name]
	s.mu.RUnlock()
	switch {
	case isStub:
		out := &ProviderResponse{APIVersion: APIVersion, Kind: "ProviderResponse", Response: Response{Idempotent: stub.Idempotent, SystemError: stub.SystemError}}
		for _, it := range stub.Items {
			if slices.Contains(keys, it.Key) {
				out.Response.Items = append(out.Response.Items, it)
			}
		}
		observeCall(name, outcomeStubbed, 0)
		return out, http.StatusOK, true, true, nil
	case !isProvider:
		return nil, 0, false, false, nil
	}
	start := time.Now()
	resp, code, err = s.client.Send(ctx, p, keys)
	outcome := outcomeOK
	switch {
	case err != nil:
		outcome = outcomeError
	case resp.Response.SystemError != "":
		outcome = outcomeSystemError
	}
	observeCall(name, outcome, time.Since(start))
	return resp, code, false, true, err
}

// Upsert puts p in force, replacing the provider of the same name.
func (s *System) Upsert(p *Provider) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.providers[p.Name] = p
}

// Remove takes the provider name out of force.
func (s *System) Remove(name string) {
	s.mu.Lock()
	delete(s.providers, name)
	s.mu.Unlock()
	s.client.forget(name)
	s.cache.forget(name)
}

// Has reports whether a provider named name is in force.
func (s *System) Has(name string) bool {
	_, ok := s.Provider(name)
	return ok
}

// Provider returns the provider in force under name.
func (s *System) Provider(name string) (*Provider, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.providers[name]
	return p, ok
}

// Answer is what the external_data builtin returns to a template, in
// Gatekeeper's shape: responses and errors as [key, value] and
// [key, error] pairs; status_code is the provider's HTTP status (0 when
// every key came from the cache); system_error is the provider's
// systemError or why it could not be called, and then responses and
// errors are null.
type Answer struct {
	Responses   [][2]any
	Errors      [][2]any
	StatusCode  int
	SystemError string
	failed      bool
}

// Value is the answer as the template sees it.
func (a Answer) Value() map[string]any {
	out := map[string]any{"status_code": a.StatusCode, "system_error": a.SystemError, "responses": nil, "errors": nil}
	if a.failed {
		return out
	}
	responses := make([]any, len(a.Responses))
	for i, r := range a.Responses {
		responses[i] = []any{r[0], r[1]}
	}
	errs := make([]any, len(a.Errors))
	for i, e := range a.Errors {
		errs[i] = []any{e[0], e[1]}
	}
	out["responses"], out["errors"] = responses, errs
	return out
}

func failed(code int, err error) Answer {
	return Answer{StatusCode: code, SystemError: err.Error(), failed: true}
}

// Query looks keys up with the provider named provider, as Gatekeeper's
// external_data builtin does: keys in the response cache are answered from
// it, the others in one call. What happened goes into the request's trace
// as a policy of kind Provider.
func (s *System) Query(ctx context.Context, provider string, keys []string) Answer {
	start := time.Now()
	a, cached, fetched, stubbed := s.query(ctx, provider, keys)
	if trace.Tracing(ctx) {
		p := trace.Policy{Kind: Kind, Name: provider, Verdict: trace.VerdictAllow, CallDuration: time.Since(start)}
		var parts []string
		if cached > 0 {
			parts = append(parts, fmt.Sprintf("%d from the response cache", cached))
		}
		switch {
		case fetched > 0 && stubbed:
			parts = append(parts, fmt.Sprintf("%d answered by its stub", fetched))
		case fetched > 0:
			parts = append(parts, fmt.Sprintf("%d fetched (HTTP %d)", fetched, a.StatusCode))
		}
		p.Reason = fmt.Sprintf("external_data: %d keys", len(keys))
		if len(parts) > 0 {
			p.Reason += ", " + strings.Join(parts, ", ")
		}
		if len(a.Errors) > 0 {
			p.Reason += fmt.Sprintf("; %d answered with an error", len(a.Errors))
		}
		if a.SystemError != "" {
			p.Verdict, p.Message = trace.VerdictError, a.SystemError
		}
		trace.AddPolicy(ctx, p)
	}
	return a
}

// ExternalData is Query's answer as the template sees it
// (constraint.ExternalData).
func (s *System) ExternalData(ctx context.Context, provider string, keys []string) map[string]any {
	return s.Query(ctx, provider, keys).Value()
}

func (s *System) query(ctx context.Context, provider string, keys []string) (a Answer, cached, fetched int, stubbed bool) {
	a.Responses, a.Errors = [][2]any{}, [][2]any{}
	var missing []string
	for _, k := range keys {
		v, ok := s.cache.get(provider, k)
		switch {
		case !ok:
			missing = append(missing, k)
		case v.err != "":
			a.Errors = append(a.Errors, [2]any{k, v.err})
		default:
			a.Responses = append(a.Responses, [2]any{k, v.value})
		}
	}
	cached = len(keys) - len(missing)
	if len(missing) == 0 {
		return a, cached, 0, false
	}
	resp, code, stubbed, ok, err := s.ask(ctx, provider, missing)
	switch {
	case !ok:
		return failed(http.StatusBadRequest, errUnknownProvider), cached, 0, false
	case err != nil:
		return failed(code, err), cached, len(missing), false
	case resp.Response.SystemError == "" && !stubbed:
		s.cache.put(provider, resp.Response.Items)
	}
	for _, it := range resp.Response.Items {
		if it.Error != "" {
			a.Errors = append(a.Errors, [2]any{it.Key, it.Error})
		} else {
			a.Responses = append(a.Responses, [2]any{it.Key, it.Value})
		}
	}
	a.StatusCode, a.SystemError = code, resp.Response.SystemError
	return a, cached, len(missing), stubbed
}

// Resolve looks keys up for the mutators' assign.externalData
// (mutation.ExternalData), with the rules of Gatekeeper's mutation: the
// answer is refused whole when it carries a systemError or is not
// idempotent (the HTTP status is not judged), and a value must be a
// string. Answers are not taken from the response cache, which serves
// validation. The call is traced as a policy of kind Provider.
func (s *System) Resolve(ctx context.Context, provider string, keys []string) (map[string]string, map[string]error, error) {
	start := time.Now()
	values, keyErrs, stubbed, err := s.resolve(ctx, provider, keys)
	if trace.Tracing(ctx) {
		p := trace.Policy{Kind: Kind, Name: provider, Verdict: trace.VerdictAllow, CallDuration: time.Since(start),
			Reason: fmt.Sprintf("assign.externalData: %d keys, %d values", len(keys), len(values))}
		if len(keyErrs) > 0 {
			p.Reason += fmt.Sprintf(", %d without a value", len(keyErrs))
		}
		if stubbed {
			p.Reason += " (answered by its stub)"
		}
		if err != nil {
			p.Verdict, p.Message = trace.VerdictError, err.Error()
		}
		trace.AddPolicy(ctx, p)
	}
	return values, keyErrs, err
}

func (s *System) resolve(ctx context.Context, provider string, keys []string) (values map[string]string, keyErrs map[string]error, stubbed bool, err error) {
	resp, _, stubbed, ok, err := s.ask(ctx, provider, keys)
	switch {
	case !ok:
		return nil, nil, stubbed, fmt.Errorf("failed to get external data provider %s: %w", provider, errUnknownProvider)
	case err != nil:
		return nil, nil, stubbed, fmt.Errorf("failed to send external data request to provider %s: %w", provider, err)
	}
	switch {
	case strings.TrimSpace(resp.Response.SystemError) != "":
		return nil, nil, stubbed, fmt.Errorf("failed to validate external data response from provider %s: non-empty system error: %s", provider, resp.Response.SystemError)
	case !resp.Response.Idempotent:
		return nil, nil, stubbed, fmt.Errorf("failed to validate external data response from provider %s: non-idempotent response", provider)
	}
	values, keyErrs = map[string]string{}, map[string]error{}
	for _, it := range resp.Response.Items {
		if !slices.Contains(keys, it.Key) {
			continue
		}
		if it.Error != "" {
			keyErrs[it.Key] = fmt.Errorf("failed to retrieve external data item from provider %s: %s", provider, it.Error)
			continue
		}
		v, ok := it.Value.(string)
		if !ok {
			keyErrs[it.Key] = fmt.Errorf("failed to convert external data item value from provider %s to string, got type %T", provider, it.Value)
			continue
		}
		values[it.Key] = v
	}
	return values, keyErrs, stubbed, nil
}
