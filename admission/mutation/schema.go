package mutation

import (
	"slices"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The schema conflict rules of Gatekeeper's pkg/mutation/schema: every
// mutator but AssignMetadata implies, through its location, part of the
// schema of each kind (and operation) it applies to. The implied schemas are
// merged into one tree per kind and operation, where each field may have
// children of several types; two mutators conflict when
//   - they give the same field different known types (one says spec.foo
//     holds an object, the other a list; "Unknown", the type of the value an
//     Assign sets, conflicts with nothing), or
//   - they select the elements of one list by different key fields
//     ([name: x] and [image: y]), or
//   - one must end where the other goes on (AssignImage sets a string, so
//     no location may extend past its own).
//
// Gatekeeper updates the tree as mutators come and go; here it is rebuilt
// on every change, which gives the same conflicts for the sets of mutators a
// cluster holds.

type binding struct {
	gvk schema.GroupVersionKind
	op  string
}

// Node types of the implied schema.
const (
	typeObject  = "Object"
	typeList    = "List"
	typeUnknown = "Unknown"
	typeSet     = "Set"
	typeString  = "String"
)

// schemaNode is a field of an implied schema.
type schemaNode struct {
	refs map[string]bool
	// terminal holds the mutators whose location must end here.
	terminal map[string]bool
	// children by key (a field, or a list's key field), then type.
	children map[string]map[string]*schemaNode
}

func newSchemaNode() *schemaNode {
	return &schemaNode{refs: map[string]bool{}, terminal: map[string]bool{}, children: map[string]map[string]*schemaNode{}}
}

// schemaOf returns the implied schema of m: its bindings, the type of the
// last node of its location, and whether the location must end there. ok is
// false for AssignMetadata, which has none.
func (m *Mutator) schemaOf() (bindings []binding, terminal string, mustTerminate, ok bool) {
	switch m.kind {
	case KindAssign:
		terminal = typeUnknown
	case KindModifySet:
		terminal = typeSet
	case KindAssignImage:
		terminal, mustTerminate = typeString, true
	default:
		return nil, "", false, false
	}
	for _, a := range m.applyTo {
		for _, g := range a.groups {
			for _, v := range a.versions {
				for _, k := range a.kinds {
					for _, op := range a.effectiveOperations() {
						b := binding{schema.GroupVersionKind{Group: g, Version: v, Kind: k}, op}
						if !slices.Contains(bindings, b) {
							bindings = append(bindings, b)
						}
					}
				}
			}
		}
	}
	return bindings, terminal, mustTerminate, true
}

// nodeKey is a path node's key in the schema: the field, or for a list
// selector its key field.
func nodeKey(n Node) string {
	if n.List {
		return n.KeyField
	}
	return n.Field
}

// headType is the type of the value under p[0]: what p[1] needs, or the
// terminal type at the end of the location.
func headType(p Path, terminal string) string {
	switch {
	case len(p) < 2:
		return terminal
	case p[1].List:
		return typeList
	default:
		return typeObject
	}
}

func (n *schemaNode) add(id string, p Path, terminal string, mustTerminate bool) {
	n.refs[id] = true
	if len(p) == 0 {
		if mustTerminate {
			n.terminal[id] = true
		}
		return
	}
	key, typ := nodeKey(p[0]), headType(p, terminal)
	if n.children[key] == nil {
		n.children[key] = map[string]*schemaNode{}
	}
	child := n.children[key][typ]
	if child == nil {
		child = newSchemaNode()
		n.children[key][typ] = child
	}
	child.add(id, p[1:], terminal, mustTerminate)
}

// conflictsAt returns the mutators in conflict at n's child key.
func (n *schemaNode) conflictsAt(key string, into map[string]bool) {
	byType := n.children[key]
	known := len(byType)
	if _, ok := byType[typeUnknown]; ok {
		known--
	}
	mustTerminate, grandchildren := false, false
	for typ, child := range byType {
		mustTerminate = mustTerminate || len(child.terminal) > 0
		grandchildren = grandchildren || len(child.children) > 0
		if typ == typeUnknown {
			continue
		}
		if known > 1 || typ == typeList && len(child.children) > 1 {
			for id := range child.refs {
				into[id] = true
			}
		}
	}
	if !mustTerminate || !grandchildren {
		return
	}
	for _, child := range byType {
		for id := range child.terminal {
			into[id] = true
		}
		for _, gcs := range child.children {
			for _, gc := range gcs {
				for id := range gc.refs {
					into[id] = true
				}
			}
		}
	}
}

// allConflicts adds the conflicts anywhere in the tree under n.
func (n *schemaNode) allConflicts(into map[string]bool) {
	for key, byType := range n.children {
		n.conflictsAt(key, into)
		for _, child := range byType {
			child.allConflicts(into)
		}
	}
}

// schemaConflicts returns, for each mutator in conflict, the IDs of the
// mutators it conflicts with (those in conflict along its location).
func schemaConflicts(mutators []*Mutator) map[string][]string {
	trees := map[binding]*schemaNode{}
	for _, m := range mutators {
		bindings, terminal, mustTerminate, ok := m.schemaOf()
		if !ok {
			continue
		}
		for _, b := range bindings {
			if trees[b] == nil {
				trees[b] = newSchemaNode()
			}
			trees[b].add(m.ID(), m.location, terminal, mustTerminate)
		}
	}
	inConflict := map[string]bool{}
	for _, t := range trees {
		t.allConflicts(inConflict)
	}
	out := map[string][]string{}
	for _, m := range mutators {
		if !inConflict[m.ID()] {
			continue
		}
		bindings, terminal, _, _ := m.schemaOf()
		with := map[string]bool{}
		for _, b := range bindings {
			n := trees[b]
			for i := range m.location {
				key := nodeKey(m.location[i])
				n.conflictsAt(key, with)
				n = n.children[key][headType(m.location[i:], terminal)]
			}
		}
		delete(with, m.ID())
		ids := make([]string, 0, len(with))
		for id := range with {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		out[m.ID()] = ids
	}
	return out
}
