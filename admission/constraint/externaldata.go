package constraint

import (
	"context"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/types"
)

// ExternalData answers Gatekeeper's external_data builtin: given
// {"provider": name, "keys": [...]}, the object a template sees
// (responses, errors, status_code, system_error). Package externaldata's
// System is the one implementation.
type ExternalData interface {
	ExternalData(ctx context.Context, provider string, keys []string) map[string]any
}

// ExternalDataBuiltin is the builtin's name in Rego.
const ExternalDataBuiltin = "external_data"

// externalDataDecl is Gatekeeper's declaration: any to any.
var externalDataDecl = types.NewFunction(types.Args(types.A), types.A)

// SetExternalData makes external_data available to the templates compiled
// from now on, answered by x. Without it, as in Gatekeeper's gator, a
// template that calls it does not compile ("undefined function
// external_data"). Call it before templates are added.
func (e *Engine) SetExternalData(x ExternalData) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.externalData = x
	caps := *e.capabilities
	caps.Builtins = append(slices.Clone(caps.Builtins), &ast.Builtin{Name: ExternalDataBuiltin, Decl: externalDataDecl})
	e.capabilities = &caps
}

// externalDataOption is the rego option that implements the builtin, or
// nil when the engine has none.
func (e *Engine) externalDataOption() func(*rego.Rego) {
	e.mu.RLock()
	x := e.externalData
	e.mu.RUnlock()
	if x == nil {
		return nil
	}
	// Memoized as in Gatekeeper: within one evaluation, the same call is
	// made once.
	return rego.Function1(&rego.Function{Name: ExternalDataBuiltin, Decl: externalDataDecl, Memoize: true},
		func(bctx rego.BuiltinContext, arg *ast.Term) (*ast.Term, error) {
			var req struct {
				Provider string   `json:"provider"`
				Keys     []string `json:"keys"`
			}
			if err := ast.As(arg.Value, &req); err != nil {
				return nil, err
			}
			v, err := ast.InterfaceToValue(x.ExternalData(bctx.Context, req.Provider, req.Keys))
			if err != nil {
				return nil, err
			}
			return ast.NewTerm(v), nil
		})
}
