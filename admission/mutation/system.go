package mutation

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apiserver/pkg/admission"

	"github.com/gatehouse-dev/gatehouse/admission/constraint"
)

// ErrNotConverging is wrapped by the error of a Mutate whose mutators keep
// changing the object (Gatekeeper's message).
var ErrNotConverging = errors.New("mutation not converging")

// ErrConflictingSchema is wrapped by the error of an Upsert whose mutator
// disagrees with another on the shape of a kind they both mutate.
var ErrConflictingSchema = errors.New("mutators have conflicting schemas")

// Request is the admission request an object is mutated for.
type Request struct {
	// Operation is CREATE or UPDATE; objects of other operations are not
	// mutated (Gatekeeper's mutating webhook is registered for create and
	// update only, so nothing is mutated while being deleted). "" stands for
	// no operation (audit, offline expansion): then only the mutators that
	// apply to every operation run, as in Gatekeeper.
	Operation admission.Operation
	// GVK is the kind of the request (the object's kind in the version it
	// was sent in); applyTo and spec.match.kinds are tested against it.
	GVK schema.GroupVersionKind
	// Namespace is the request's namespace ("" for cluster-scoped objects).
	// It stands in for the object's metadata.namespace while mutating, as in
	// Gatekeeper's webhook, so that fromMetadata and spec.match see it even
	// when the object leaves it out.
	Namespace string
	// NamespaceObject is the object's Namespace, for
	// spec.match.namespaceSelector; nil for cluster-scoped objects. A
	// Namespace is its own.
	NamespaceObject map[string]any
	// SubResource is the request's subresource, if any. Objects sent to a
	// subresource (pods/status, deployments/scale, …) are not mutated:
	// Gatekeeper's webhook selects resources "*", which excludes them.
	SubResource string
	// Generated marks a resource expanded from a workload (an
	// ExpansionTemplate's resultant): mutators with spec.match.source
	// Generated apply to it, those with Original do not.
	Generated bool
	// Username is the requesting user's name, the key of
	// assign.externalData with dataSource Username.
	Username string
}

// System holds the mutators in force and applies them. It is safe for
// concurrent use.
type System struct {
	mu       sync.RWMutex
	mutators map[string]*Mutator
	// order is Gatekeeper's order of application: by kind, then name.
	order []*Mutator
	// conflicts maps the ID of each mutator that is not applied because of
	// a schema conflict to the IDs of the mutators it conflicts with.
	conflicts map[string][]string
	// externalData answers assign.externalData (SetExternalData).
	externalData ExternalData
}

// SetExternalData makes x answer the mutators' assign.externalData. Without
// it, a request that such a mutator changes fails, saying so.
func (s *System) SetExternalData(x ExternalData) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.externalData = x
}

// NewSystem returns a System without mutators.
func NewSystem() *System {
	return &System{mutators: map[string]*Mutator{}, conflicts: map[string][]string{}}
}

// Upsert adds m, replacing the mutator of the same kind and name.
//
// As in Gatekeeper, each location implies part of the schema of the kinds
// its mutator applies to (spec.containers[name: foo].image says containers
// is a list keyed by name); when two mutators disagree (another says
// spec.containers.image, an object), neither is applied until one of them
// changes or goes, because together they might never converge. Upsert then
// keeps m and returns an error wrapping ErrConflictingSchema.
func (s *System) Upsert(m *Mutator) error {
	if m == nil {
		return errors.New("upsert: nil mutator")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mutators[m.ID()] = m
	s.reindex()
	if with, ok := s.conflicts[m.ID()]; ok {
		return fmt.Errorf("%w: %s conflicts with %s on the shape of the objects they mutate; they are not applied until that changes", ErrConflictingSchema, m.ID(), strings.Join(with, ", "))
	}
	return nil
}

// Remove removes the mutator of that kind and name, if there is one.
func (s *System) Remove(kind, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.mutators[id(kind, name)]; !ok {
		return
	}
	delete(s.mutators, id(kind, name))
	s.reindex()
}

// Has reports whether the mutator of that kind and name is in the system.
func (s *System) Has(kind, name string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.mutators[id(kind, name)]
	return ok
}

// Conflicts returns the IDs of the mutators whose schemas conflict with the
// named one's; when there are some, neither is applied.
func (s *System) Conflicts(kind, name string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.conflicts[id(kind, name)])
}

func (s *System) reindex() {
	s.order = s.order[:0]
	for _, m := range s.mutators {
		s.order = append(s.order, m)
	}
	// Gatekeeper orders mutators by group, kind, namespace and name; the
	// group is always the same and mutators are cluster-scoped.
	slices.SortFunc(s.order, func(a, b *Mutator) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.name, b.name))
	})
	s.conflicts = schemaConflicts(s.order)
}

// Applies reports whether any mutator in force may apply to objects of
// gvk under op, so that a caller can skip converting objects no mutator
// can touch.
func (s *System) Applies(gvk schema.GroupVersionKind, op admission.Operation) bool {
	if slices.Contains(gatekeeperGroups, gvk.Group) {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, m := range s.order {
		if _, held := s.conflicts[m.ID()]; !held && m.appliesTo(gvk, op) {
			return true
		}
	}
	return false
}

// gatekeeperGroups are the API groups whose objects Gatekeeper never
// mutates (its webhook's isGatekeeperResource).
var gatekeeperGroups = []string{
	"templates.gatekeeper.sh", "constraints.gatekeeper.sh", Group, "config.gatekeeper.sh",
	"externaldata.gatekeeper.sh", "expansion.gatekeeper.sh", "status.gatekeeper.sh",
}

// Mutate applies every mutator whose applyTo and spec.match select obj, as
// Gatekeeper's mutation system does: all mutators in order (by kind, then
// name), again and again until a pass leaves the object unchanged; if it
// still changes after one pass more than there are mutators, the mutators do
// not converge and Mutate fails with Gatekeeper's error (wrapping
// ErrNotConverging). Matching is done against the object as mutated so far,
// so a label one mutator adds can make another one match on the next pass.
//
// changed reports whether obj was changed (it is changed in place); applied
// names the mutators that changed it, in Gatekeeper's annotation format
// ("<kind>//<name>:<generation>"), sorted. On error obj is left as it was.
func (s *System) Mutate(req *Request, obj *unstructured.Unstructured) (changed bool, applied []string, err error) {
	return s.MutateContext(context.Background(), req, obj)
}

// MutateContext is Mutate with the context that calls to external data
// providers (assign.externalData) are made with. Once the mutators have
// converged, the values they asked providers for are fetched, one call per
// provider, and written where they go; a value that cannot be had fails
// the mutation under failurePolicy Fail, as in Gatekeeper ("failed to
// resolve external data placeholders: ...").
func (s *System) MutateContext(ctx context.Context, req *Request, obj *unstructured.Unstructured) (changed bool, applied []string, err error) {
	if req == nil || obj == nil || obj.Object == nil {
		return false, nil, errors.New("mutate: no request or object")
	}
	switch req.Operation {
	case admission.Create, admission.Update, "":
	default:
		return false, nil, nil
	}
	if req.SubResource != "" || slices.Contains(gatekeeperGroups, req.GVK.Group) {
		return false, nil, nil
	}
	work, restore, applied, x, err := s.converge(req, obj)
	if err != nil || work == nil {
		return false, nil, err
	}
	// Out of the lock: providers may take their timeout to answer.
	if err := resolvePlaceholders(ctx, x, work.Object); err != nil {
		return false, nil, fmt.Errorf("failed to resolve external data placeholders: %w", err)
	}
	restore()
	obj.Object = work.Object
	return true, applied, nil
}

// converge applies the mutators to a copy of obj until it stops changing
// and returns the copy with its namespace still set for mutation (restore
// puts obj's back), the mutators that changed it and what answers their
// externalData; a nil copy when none changed it.
func (s *System) converge(req *Request, obj *unstructured.Unstructured) (work *unstructured.Unstructured, restore func(), applied []string, x ExternalData, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	// The mutators that may apply: applyTo is tested once, spec.match on
	// every pass.
	var candidates []*Mutator
	for _, m := range s.order {
		if _, held := s.conflicts[m.ID()]; !held && m.appliesTo(req.GVK, req.Operation) {
			candidates = append(candidates, m)
		}
	}
	if len(candidates) == 0 {
		return nil, nil, nil, nil, nil
	}

	work = &unstructured.Unstructured{Object: copyJSON(obj.Object).(map[string]any)}
	// Gatekeeper's webhook gives the object the request's namespace (none
	// for a Namespace) while mutating and puts the original back after.
	isNamespace := req.GVK.Group == "" && req.GVK.Kind == "Namespace"
	ns := req.Namespace
	if isNamespace {
		ns = ""
	}
	restore = setNamespace(work, ns)
	target := &constraint.Target{GVK: req.GVK, Namespace: ns, Object: work.Object, NamespaceObject: req.NamespaceObject, Generated: req.Generated}
	if isNamespace {
		target.NamespaceObject = work.Object
	}

	appliedSet := map[string]bool{}
	maxIterations := len(s.order) + 1
	for iteration := 1; iteration <= maxIterations; iteration++ {
		before := copyJSON(work.Object)
		var appliedNow []string
		for _, m := range candidates {
			target.Name = work.GetName()
			ok, err := m.matches(target)
			if err != nil {
				return nil, nil, nil, nil, fmt.Errorf("matching for mutator %s failed for %s: %w", m.ID(), describe(req, work), err)
			}
			if !ok {
				continue
			}
			c, err := m.mutate(work, req.Username)
			if err != nil {
				return nil, nil, nil, nil, fmt.Errorf("mutation %s for mutator %s failed for %s: %w", uuid.NewUUID(), m.ID(), describe(req, work), err)
			}
			if c {
				appliedNow = append(appliedNow, m.String())
			}
		}
		if len(appliedNow) == 0 || jsonEqual(before, work.Object) {
			if iteration == 1 {
				return nil, nil, nil, nil, nil
			}
			applied = make([]string, 0, len(appliedSet))
			for a := range appliedSet {
				applied = append(applied, a)
			}
			slices.Sort(applied)
			return work, restore, applied, s.externalData, nil
		}
		for _, a := range appliedNow {
			appliedSet[a] = true
		}
	}
	return nil, nil, nil, nil, fmt.Errorf("%w: mutation %s not converging for %s", ErrNotConverging, uuid.NewUUID(), describe(req, work))
}

// describe is how Gatekeeper names the object in mutation errors:
// "<group> <kind> <namespace> <name or generateName>".
func describe(req *Request, obj *unstructured.Unstructured) string {
	name := obj.GetName()
	if name == "" {
		name = obj.GetGenerateName()
	}
	return fmt.Sprintf("%s %s %s %s", req.GVK.Group, req.GVK.Kind, obj.GetNamespace(), name)
}

// setNamespace sets obj's metadata.namespace ("" removes it) and returns
// the function that puts back what was there.
func setNamespace(obj *unstructured.Unstructured, ns string) (restore func()) {
	md, hadMD := obj.Object["metadata"].(map[string]any)
	old, hadNS := md["namespace"]
	if ns == "" {
		if hadNS {
			delete(md, "namespace")
		}
	} else {
		if !hadMD {
			md = map[string]any{}
			obj.Object["metadata"] = md
		}
		md["namespace"] = ns
	}
	return func() {
		md, _ := obj.Object["metadata"].(map[string]any)
		switch {
		case hadNS:
			md["namespace"] = old
		case md != nil:
			delete(md, "namespace")
			if !hadMD && len(md) == 0 {
				delete(obj.Object, "metadata")
			}
		}
	}
}

// appliesTo reports whether one applyTo entry selects both the kind and the
// operation (Gatekeeper's AppliesGVKAndOperation). AssignMetadata has no
// applyTo and applies to all.
func (m *Mutator) appliesTo(gvk schema.GroupVersionKind, op admission.Operation) bool {
	return m.applyTo == nil || slices.ContainsFunc(m.applyTo, func(a applyTo) bool {
		return a.matchesGVK(gvk) && a.matchesOperation(string(op))
	})
}

// matches reports whether spec.match selects the object.
func (m *Mutator) matches(t *constraint.Target) (bool, error) {
	if m.match == nil {
		return true, nil
	}
	ok, _, err := m.match.Matches(t)
	return ok, err
}

func (a applyTo) matchesGVK(gvk schema.GroupVersionKind) bool {
	return slices.Contains(a.groups, gvk.Group) && slices.Contains(a.versions, gvk.Version) && slices.Contains(a.kinds, gvk.Kind)
}

// matchesOperation is Gatekeeper's MutationApplyTo.MatchesOperation: no
// operations or "*" mean every operation the webhook mutates on (CREATE and
// UPDATE); without an operation only such entries (or ones listing both)
// match.
func (a applyTo) matchesOperation(op string) bool {
	all := len(a.operations) == 0 || slices.Contains(a.operations, "*")
	switch op {
	case "":
		return all || slices.Contains(a.operations, "CREATE") && slices.Contains(a.operations, "UPDATE")
	case "CREATE", "UPDATE":
		return all || slices.Contains(a.operations, op)
	default:
		return false
	}
}

// effectiveOperations are the operations an entry applies to, for schema
// bindings.
func (a applyTo) effectiveOperations() []string {
	var ops []string
	for _, op := range []string{"CREATE", "UPDATE"} {
		if a.matchesOperation(op) {
			ops = append(ops, op)
		}
	}
	return ops
}
