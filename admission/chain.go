package admission

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"k8s.io/apimachinery/pkg/util/sets"
	k8sadmission "k8s.io/apiserver/pkg/admission"
	mutatingadmissionpolicy "k8s.io/apiserver/pkg/admission/plugin/policy/mutating"
	validatingadmissionpolicy "k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	kubeoptions "k8s.io/kubernetes/pkg/kubeapiserver/options"

	"github.com/gatehouse-dev/gatehouse/admission/cabundle"
	"github.com/gatehouse-dev/gatehouse/admission/constraint"
	"github.com/gatehouse-dev/gatehouse/admission/expansion"
	"github.com/gatehouse-dev/gatehouse/admission/externaldata"
	"github.com/gatehouse-dev/gatehouse/admission/mutation"
	"github.com/gatehouse-dev/gatehouse/admission/trace"
	"github.com/gatehouse-dev/gatehouse/webhooks"
	"k8s.io/kubernetes/plugin/pkg/admission/noderestriction"
)

// Plugin is one of Gatehouse's own admission plugins and where it sits.
type Plugin struct {
	Name string
	// After is the plugin this one runs right after. Upstream keeps the
	// mutating and validating halves of the chain in one list, so "after
	// ValidatingAdmissionPolicy" places a validating plugin before the
	// validating webhooks.
	After     string
	Register  func(*k8sadmission.Plugins, Deps)
	DefaultOn bool
}

// Deps is what Gatehouse's plugins share with the rest of the process:
// the engines that controllers outside the API server keep filled.
type Deps struct {
	Constraints *constraint.Engine
	Mutators    *mutation.System
	// Trace, when set, records every admission step of every write
	// request (see package trace); Explainers add per-policy detail to
	// the steps of upstream plugins, by plugin name.
	Trace      *trace.Recorder
	Explainers map[string]trace.Explainer
	// Patched say, per mutating plugin, whether it may change a request's
	// object, so the trace records the step's patch (see trace.Decorator).
	Patched    map[string]trace.Changes
	Namespaces constraint.NamespaceLookup
	Logger     *slog.Logger
	// Webhooks, when set, records and faults the webhook plugins' calls
	// (see package webhooks); CABundle is the CA (PEM) that
	// GatehouseCABundleInjection injects.
	Webhooks *webhooks.Kit
	CABundle []byte
}

// Insertion points for Gatehouse's plugins, named once here so later plugins
// do not guess at upstream names.
const (
	// AfterMutatingPolicies: Gatekeeper mutators run after
	// MutatingAdmissionPolicy and before the mutating webhooks.
	AfterMutatingPolicies = mutatingadmissionpolicy.PluginName
	// AfterValidatingPolicies: constraints run after
	// ValidatingAdmissionPolicy and before the validating webhooks.
	AfterValidatingPolicies = validatingadmissionpolicy.PluginName
)

// gatehousePlugins lists Gatehouse's own plugins, in the order they run
// among plugins at the same insertion point.
var gatehousePlugins = []Plugin{
	{
		Name:      mutation.PluginName,
		After:     AfterMutatingPolicies,
		DefaultOn: true,
		Register: func(p *k8sadmission.Plugins, d Deps) {
			// Gatekeeper's Config, which the constraint syncer reads, and
			// its exempt namespaces also keep namespaces from mutation.
			mutation.Register(p, d.Mutators, d.Namespaces, d.Constraints, d.Logger)
		},
	},
	{
		// After Gatekeeper's mutators, so that a mutator cannot undo it.
		Name:      cabundle.PluginName,
		After:     mutation.PluginName,
		DefaultOn: true,
		Register: func(p *k8sadmission.Plugins, d Deps) {
			cabundle.Register(p, d.CABundle)
		},
	},
	{
		Name:      constraint.PluginName,
		After:     AfterValidatingPolicies,
		DefaultOn: true,
		Register: func(p *k8sadmission.Plugins, d Deps) {
			constraint.Register(p, d.Constraints, d.Namespaces, d.Logger)
		},
	},
	{
		// Refuses ExpansionTemplates Gatekeeper would refuse; the
		// constraint plugin does the expanding.
		Name:      expansion.PluginName,
		After:     constraint.PluginName,
		DefaultOn: true,
		Register: func(p *k8sadmission.Plugins, _ Deps) {
			expansion.Register(p)
		},
	},
	{
		// Refuses Providers Gatekeeper would refuse; the constraint engine
		// calls them.
		Name:      externaldata.PluginName,
		After:     expansion.PluginName,
		DefaultOn: true,
		Register: func(p *k8sadmission.Plugins, _ Deps) {
			externaldata.Register(p)
		},
	},
}

// kubeadmEnabled are the plugins a kubeadm-built cluster turns on beyond
// upstream's defaults (kubeadm passes --enable-admission-plugins=NodeRestriction).
var kubeadmEnabled = []string{noderestriction.PluginName}

// Chain returns every plugin name in the order the API server runs them.
func Chain() ([]string, error) {
	return insert(kubeoptions.AllOrderedPlugins, gatehousePlugins)
}

func insert(upstream []string, own []Plugin) ([]string, error) {
	order := slices.Clone(upstream)
	for _, p := range own {
		if slices.Contains(order, p.Name) {
			return nil, fmt.Errorf("admission plugin %q is ordered twice", p.Name)
		}
		i := slices.Index(order, p.After)
		if i < 0 {
			return nil, fmt.Errorf("admission plugin %q: insertion point %q is not in the chain", p.Name, p.After)
		}
		// Insert after the anchor and after any plugin already inserted
		// there, so registration order decides among neighbours.
		j := i + 1
		for j < len(order) && slices.ContainsFunc(own, func(q Plugin) bool { return q.Name == order[j] && q.After == p.After }) {
			j++
		}
		order = slices.Insert(order, j, p.Name)
	}
	return order, nil
}

// EnabledByDefault lists the plugins Gatehouse turns on, in chain order:
// upstream's default-on set, what kubeadm adds, and Gatehouse's own.
func EnabledByDefault() ([]string, error) {
	order, err := Chain()
	if err != nil {
		return nil, err
	}
	on := sets.New(order...).Difference(kubeoptions.DefaultOffAdmissionPlugins())
	on.Insert(kubeadmEnabled...)
	for _, p := range gatehousePlugins {
		if !p.DefaultOn {
			on.Delete(p.Name)
		}
	}
	return slices.DeleteFunc(order, func(n string) bool { return !on.Has(n) }), nil
}

// Configure registers Gatehouse's plugins on kube-apiserver's admission
// options, installs the chain order and default set, and checks that every
// registered plugin is ordered and every ordered plugin registered.
func Configure(opts *kubeoptions.AdmissionOptions, deps Deps) error {
	generic := opts.GenericAdmission
	for _, p := range gatehousePlugins {
		p.Register(generic.Plugins, deps)
	}
	order, err := Chain()
	if err != nil {
		return err
	}
	if err := Check(generic.Plugins.Registered(), order); err != nil {
		return err
	}
	off := kubeoptions.DefaultOffAdmissionPlugins()
	off.Delete(kubeadmEnabled...)
	for _, p := range gatehousePlugins {
		if p.DefaultOn {
			off.Delete(p.Name)
		} else {
			off.Insert(p.Name)
		}
	}
	generic.RecommendedPluginOrder = order
	generic.DefaultOffPlugins = off
	if deps.Trace != nil {
		patched := map[string]trace.Changes{}
		maps.Copy(patched, deps.Patched)
		if deps.Mutators != nil {
			patched[mutation.PluginName] = func(a k8sadmission.Attributes, _ k8sadmission.ObjectInterfaces) bool {
				return deps.Mutators.Applies(a.GetKind(), a.GetOperation())
			}
		}
		// Innermost, under upstream's metrics decorator, which makes every
		// plugin look both mutating and validating: the trace sees each
		// plugin's own interfaces, and times the plugin alone.
		generic.Decorators = append(k8sadmission.Decorators{trace.Decorator(deps.Explainers, patched)}, generic.Decorators...)
	}
	if deps.Webhooks != nil {
		// First of all: it must see the webhook plugins themselves.
		generic.Decorators = append(k8sadmission.Decorators{deps.Webhooks.Decorator()}, generic.Decorators...)
	}
	return nil
}

// Check reports plugins that are registered but not ordered, or ordered but
// not registered; either would make the chain silently differ from the list.
func Check(registered, order []string) error {
	reg, ord := sets.New(registered...), sets.New(order...)
	if len(order) != ord.Len() {
		return fmt.Errorf("admission chain lists a plugin twice: %v", order)
	}
	unordered := sets.List(reg.Difference(ord))
	unregistered := sets.List(ord.Difference(reg))
	switch {
	case len(unordered) > 0 && len(unregistered) > 0:
		return fmt.Errorf("admission plugins registered but not ordered: %v; ordered but not registered: %v", unordered, unregistered)
	case len(unordered) > 0:
		return fmt.Errorf("admission plugins registered but not ordered: %v", unordered)
	case len(unregistered) > 0:
		return fmt.Errorf("admission plugins ordered but not registered: %v", unregistered)
	}
	return nil
}
