package constraint

import (
	"errors"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
)

var (
	dataRef      = ast.MustParseRef("data")
	libRoot      = ast.MustParseRef("data.lib")
	inventoryRef = ast.MustParseRef("data.inventory")
	templateRef  = ast.MustParseRef("data.template")
)

// compile parses and compiles one template's modules the way Gatekeeper's
// Rego driver does (frameworks constraint/pkg/client/drivers/rego): each
// module is parsed as Rego v1 and, failing that, v0; the template's package
// becomes data.template and must define violation; libs must live under
// data.lib; Rego may refer to data only under data.lib and data.inventory.
func (e *Engine) compile(src TemplateSource) (*ast.Compiler, error) {
	if src.Rego == "" {
		return nil, errors.New("no Rego source for target " + AdmissionTarget)
	}
	entry, err := parseModule(src.Name+".rego", src.Rego)
	if err != nil {
		return nil, err
	}
	if !hasRule(entry, "violation") {
		return nil, errors.New("invalid rego: missing required rule violation")
	}
	entry.Package.Path = templateRef.Copy()

	modules := map[string]*ast.Module{src.Name + ".rego": entry}
	checked := []*ast.Module{entry}
	for i, lib := range src.Libs {
		name := fmt.Sprintf("%s.lib%d.rego", src.Name, i)
		m, err := parseModule(name, lib)
		if err != nil {
			return nil, err
		}
		if p := m.Package.Path; !p.HasPrefix(libRoot) || p.Equal(libRoot) {
			return nil, fmt.Errorf("%s: package %s is not under data.lib", name, p)
		}
		modules[name] = m
		checked = append(checked, m)
	}
	for _, m := range checked {
		if err := checkDataRefs(m); err != nil {
			return nil, err
		}
	}

	compiler := ast.NewCompiler().WithCapabilities(e.capabilities)
	compiler.Compile(modules)
	if compiler.Failed() {
		return nil, compiler.Errors
	}
	return compiler, nil
}

// parseModule tries Rego v1 first, then v0, as Gatekeeper does; the error
// reported is v0's when both fail, since most templates are v0.
func parseModule(filename, src string) (*ast.Module, error) {
	m, err := ast.ParseModuleWithOpts(filename, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		m, err = ast.ParseModuleWithOpts(filename, src, ast.ParserOptions{RegoVersion: ast.RegoV0})
	}
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("%s: empty module", filename)
	}
	return m, nil
}

func hasRule(m *ast.Module, name string) bool {
	for _, r := range m.Rules {
		if r.Head.Name.String() == name || (len(r.Head.Reference) > 0 && r.Head.Reference[0].Value.Compare(ast.Var(name)) == 0) {
			return true
		}
	}
	return false
}

// checkDataRefs rejects imports and references to data outside data.lib
// and data.inventory, as Gatekeeper's rewriter does.
func checkDataRefs(m *ast.Module) error {
	var errs []error
	for _, imp := range m.Imports {
		ref, ok := imp.Path.Value.(ast.Ref)
		if ok && ref.HasPrefix(dataRef) && !ref.HasPrefix(libRoot) && !ref.HasPrefix(inventoryRef) {
			errs = append(errs, fmt.Errorf("%s: import %s: only data.lib and data.inventory may be imported", imp.Location, ref))
		}
	}
	for _, rule := range m.Rules {
		ast.WalkRefs(rule, func(ref ast.Ref) bool {
			if ref.HasPrefix(dataRef) && !ref.HasPrefix(libRoot) && !ref.HasPrefix(inventoryRef) {
				loc := ""
				if len(ref) > 0 && ref[0].Location != nil {
					loc = ref[0].Location.String() + ": "
				}
				errs = append(errs, fmt.Errorf("%sdisallowed ref %s: templates may read data.inventory and data.lib only", loc, ref))
			}
			return true
		})
	}
	return errors.Join(errs...)
}
