package mutation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	utilerrors "k8s.io/apimachinery/pkg/util/errors"
)

// assign.externalData's data sources and failure policies.
const (
	DataSourceValueAtLocation = "ValueAtLocation"
	DataSourceUsername        = "Username"

	FailurePolicyFail       = "Fail"
	FailurePolicyIgnore     = "Ignore"
	FailurePolicyUseDefault = "UseDefault"
)

// ExternalDataSpec is an Assign's or AssignMetadata's
// spec.parameters.assign.externalData.
type ExternalDataSpec struct {
	Provider string
	// DataSource says which key is sent: the value at the location
	// (ValueAtLocation) or the requesting user's name (Username).
	DataSource string
	// FailurePolicy says what a key without a value gets: the request is
	// refused (Fail), the key stays (Ignore), or Default is written
	// (UseDefault).
	FailurePolicy string
	Default       string
}

// ExternalData answers assign.externalData: for each key, the provider's
// value or why there is none; err fails every key (the provider could not
// be called, or its answer is refused whole). Package externaldata's
// System is the one implementation.
type ExternalData interface {
	Resolve(ctx context.Context, provider string, keys []string) (values map[string]string, keyErrs map[string]error, err error)
}

// placeholder stands, while mutators run, where an externalData mutator
// writes: the provider's answer for key replaces it once the mutators have
// converged, so that each provider is called once per request with all its
// keys, as Gatekeeper does. Immutable: a mutator writes a new one.
type placeholder struct {
	spec *ExternalDataSpec
	key  string
}

// newPlaceholder is what m writes over old: the key is the string already
// there (ValueAtLocation), the key of the placeholder already there, or the
// user's name (Username).
func (w *walker) newPlaceholder(old any, exists bool) (*placeholder, error) {
	spec := w.m.externalData
	if spec.DataSource == DataSourceUsername {
		return &placeholder{spec: spec, key: w.username}, nil
	}
	key := ""
	if exists {
		switch v := old.(type) {
		case string:
			key = v
		case *placeholder:
			key = v.key
		default:
			return nil, fmt.Errorf("location %s: value assigned to external data placeholder is not a string, got %v (%T)", w.m.location, old, old)
		}
	}
	return &placeholder{spec: spec, key: key}, nil
}

// resolvePlaceholders replaces every placeholder in obj by its provider's
// answer: one call per provider with its distinct keys, providers called
// in parallel. A key without a value is handled by its mutator's
// failurePolicy; the errors of those with Fail are returned together.
func resolvePlaceholders(ctx context.Context, x ExternalData, obj map[string]any) error {
	keys := map[string][]string{} // by provider
	var visit func(v any)
	visit = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			for _, e := range t {
				visit(e)
			}
		case []any:
			for _, e := range t {
				visit(e)
			}
		case *placeholder:
			if !slices.Contains(keys[t.spec.Provider], t.key) {
				keys[t.spec.Provider] = append(keys[t.spec.Provider], t.key)
			}
		}
	}
	visit(obj)
	if len(keys) == 0 {
		return nil
	}
	type answer struct {
		values  map[string]string
		keyErrs map[string]error
		err     error
	}
	answers := make(map[string]*answer, len(keys))
	for provider := range keys {
		answers[provider] = &answer{}
	}
	var wg sync.WaitGroup
	for provider, ks := range keys {
		a := answers[provider]
		if x == nil {
			a.err = errors.New("external data providers are not available here (gatehouse test does not call providers, as gator does not)")
			continue
		}
		wg.Go(func() { a.values, a.keyErrs, a.err = x.Resolve(ctx, provider, ks) })
	}
	wg.Wait()

	var errs []error
	var replace func(v any) any
	replace = func(v any) any {
		switch t := v.(type) {
		case map[string]any:
			for k, e := range t {
				t[k] = replace(e)
			}
		case []any:
			for i, e := range t {
				t[i] = replace(e)
			}
		case *placeholder:
			a := answers[t.spec.Provider]
			err := a.err
			if err == nil {
				err = a.keyErrs[t.key]
			}
			if err == nil {
				if value, ok := a.values[t.key]; ok {
					return value
				}
				err = fmt.Errorf("failed to find external data item in response for provider %s", t.spec.Provider)
			}
			switch t.spec.FailurePolicy {
			case FailurePolicyIgnore:
				return t.key
			case FailurePolicyUseDefault:
				return t.spec.Default
			default:
				errs = append(errs, err)
				return t.key
			}
		}
		return v
	}
	replace(obj)
	return utilerrors.NewAggregate(errs)
}
