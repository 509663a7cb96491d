package expansion

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gatehouse-dev/gatehouse/admission/constraint"
	"github.com/gatehouse-dev/gatehouse/admission/mutation"
)

// System holds the ExpansionTemplates in force and expands workloads with
// them. It is safe for concurrent use.
type System struct {
	mutators *mutation.System

	mu        sync.RWMutex
	templates map[string]*Template
}

var _ constraint.Expander = &System{}

// NewSystem returns a System whose resultants are mutated by mutators
// (nil for none).
func NewSystem(mutators *mutation.System) *System {
	return &System{mutators: mutators, templates: map[string]*Template{}}
}

// Upsert adds t, replacing the template of the same name.
func (s *System) Upsert(t *Template) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.templates[t.Name] = t
}

// Remove removes the template called name, if there is one.
func (s *System) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.templates, name)
}

// Has reports whether the template called name is in force.
func (s *System) Has(name string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.templates[name]
	return ok
}

// Generators are the kinds some template expands.
func (s *System) Generators() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var kinds []string
	for _, t := range s.templates {
		for _, a := range t.ApplyTo {
			kinds = append(kinds, a.Kinds...)
		}
	}
	slices.Sort(kinds)
	return slices.Compact(kinds)
}

// Expands reports whether some template applies to gvk.
func (s *System) Expands(gvk schema.GroupVersionKind) bool {
	return len(s.applying(gvk)) > 0
}

// applying are the templates that apply to gvk, in name order.
func (s *System) applying(gvk schema.GroupVersionKind) []*Template {
	s.mu.RLock()
	var out []*Template
	for _, t := range s.templates {
		if slices.ContainsFunc(t.ApplyTo, func(a ApplyTo) bool { return a.Matches(gvk) }) {
			out = append(out, t)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b *Template) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Expand makes, for each template that applies to obj's kind (in name
// order), the resource obj would create: the field at the template's
// source, with the generated kind, obj's namespace, and the name
// "<obj's name>-<kind>" in lower case (Gatekeeper's mock name); then it
// applies the mutators that apply to generated resources. namespace is
// obj's Namespace object, for the mutators' namespaceSelector.
func (s *System) Expand(obj *unstructured.Unstructured, namespace map[string]any) ([]constraint.Resultant, error) {
	gvk := obj.GroupVersionKind()
	if gvk.Kind == "" {
		return nil, fmt.Errorf("cannot expand %s: it has no kind", obj.GetName())
	}
	var out []constraint.Resultant
	for _, t := range s.applying(gvk) {
		src, found, err := unstructured.NestedMap(obj.Object, strings.Split(t.Source, ".")...)
		if err != nil {
			return nil, fmt.Errorf("ExpansionTemplate %s: reading %s: %w", t.Name, t.Source, err)
		}
		if !found {
			// Gatekeeper fails the review here; a workload without the
			// field (a Deployment without spec.template) is refused by the
			// API server's validation anyway, so say which field is missing.
			return nil, fmt.Errorf("ExpansionTemplate %s: %s %s has no field %s", t.Name, gvk.Kind, obj.GetName(), t.Source)
		}
		res := &unstructured.Unstructured{Object: src}
		res.SetGroupVersionKind(t.Generated)
		res.SetNamespace(obj.GetNamespace())
		res.SetName(mockName(obj.GetName(), t.Generated))
		if s.mutators != nil {
			req := &mutation.Request{GVK: t.Generated, Namespace: obj.GetNamespace(), NamespaceObject: namespace, Generated: true}
			if _, _, err := s.mutators.Mutate(req, res); err != nil {
				return nil, fmt.Errorf("ExpansionTemplate %s: mutating the %s: %w", t.Name, t.Generated.Kind, err)
			}
		}
		out = append(out, constraint.Resultant{Object: res, Template: t.Name, EnforcementAction: t.EnforcementAction})
	}
	return out, nil
}

// mockName is Gatekeeper's name for a resultant: the workload's name and
// the generated kind, lower-cased ("nginx-deployment-pod").
func mockName(workload string, gvk schema.GroupVersionKind) string {
	return strings.ToLower(workload + "-" + gvk.Kind)
}
