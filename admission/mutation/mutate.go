package mutation

import (
	"fmt"
	"math"
	"reflect"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// tester holds a mutator's path tests by depth (the index in the location
// of the test's last node), as pkg/mutation/path/tester does.
type tester map[int]string

func (t tester) existsOK(depth int) bool {
	c, ok := t[depth]
	return !ok || c == MustExist
}

func (t tester) missingOK(depth int) bool {
	c, ok := t[depth]
	return !ok || c == MustNotExist
}

// mutate applies m to obj in place and reports whether obj changed;
// username is the requesting user's (for externalData's Username).
func (m *Mutator) mutate(obj *unstructured.Unstructured, username string) (bool, error) {
	w := &walker{m: m, username: username}
	switch m.kind {
	case KindAssign, KindAssignMetadata:
		w.value = m.value
		switch m.fromMetadata {
		case "namespace":
			w.value = obj.GetNamespace()
		case "name":
			w.value = obj.GetName()
		}
	}
	_, changed, _, err := w.at(obj.Object, 0)
	return changed, err
}

// walker follows a mutator's location through an object, the way
// pkg/mutation/mutators/core.Mutate does: missing objects on the way are
// created, a keyed list element [key: value] that is missing is created with
// its key set, a glob [key: *] visits the existing elements only, and path
// tests stop the walk where they fail. What the walk creates is kept only if
// the walk reaches the end of the location.
type walker struct {
	m        *Mutator
	value    any // the resolved value of an Assign or AssignMetadata
	username string
}

// at walks node depth of the location in cur. reached reports that the end
// of the location was reached below cur (Gatekeeper's "mutated": the caller
// then keeps result in place of cur); changed that something was actually
// written.
func (w *walker) at(cur any, depth int) (reached, changed bool, result any, err error) {
	loc := w.m.location
	n := loc[depth]
	last := depth == len(loc)-1
	if !n.List {
		obj, ok := cur.(map[string]any)
		if !ok {
			return false, false, nil, w.mismatch(depth, cur, "an object")
		}
		next, exists := obj[n.Field]
		if exists && !w.m.tests.existsOK(depth) || !exists && !w.m.tests.missingOK(depth) {
			return false, false, nil, nil
		}
		if last {
			changed, err := w.set(obj, n.Field, depth)
			return err == nil, changed, obj, err
		}
		if !exists {
			if next, err = w.create(depth); err != nil {
				return false, false, nil, err
			}
		}
		reached, changed, next, err = w.at(next, depth+1)
		if err != nil || !reached {
			return false, false, nil, err
		}
		obj[n.Field] = next
		return true, changed || !exists, obj, nil
	}

	list, ok := cur.([]any)
	if !ok {
		return false, false, nil, w.mismatch(depth, cur, "a list")
	}
	list = cloneList(list)
	if last {
		return w.setElement(list, n, depth)
	}
	// A glob can never satisfy MustNotExist.
	if n.Glob && !w.m.tests.existsOK(depth) {
		return false, false, nil, nil
	}
	found := false
	for _, el := range list {
		if !n.Glob {
			elObj, ok := el.(map[string]any)
			if !ok {
				continue
			}
			if v, ok := elObj[n.KeyField]; !ok || !keyEqual(n.KeyValue, v) {
				continue
			}
			if !w.m.tests.existsOK(depth) {
				return false, false, nil, nil
			}
		}
		// The element is changed in place (it is an object, since the next
		// node is a field), so the result is not needed.
		r, c, _, err := w.at(el, depth+1)
		if err != nil {
			return false, false, nil, err
		}
		reached, changed, found = reached || r, changed || c, true
	}
	if !n.Glob && !found {
		if !w.m.tests.missingOK(depth) {
			return false, false, nil, nil
		}
		el, err := w.create(depth)
		if err != nil {
			return false, false, nil, err
		}
		r, _, _, err := w.at(el, depth+1)
		if err != nil {
			return false, false, nil, err
		}
		if r {
			list = append(list, el)
			reached, changed = true, true
		}
	}
	return reached, changed, list, nil
}

// create makes the missing value at node depth: an object, or a list when
// the next node selects list elements; a new list element gets its key.
func (w *walker) create(depth int) (any, error) {
	n := w.m.location[depth]
	if w.m.location[depth+1].List {
		return []any{}, nil
	}
	obj := map[string]any{}
	if n.List {
		if n.Glob {
			return nil, fmt.Errorf("%s: cannot create an element for a glob", w.m.location[:depth+1])
		}
		obj[n.KeyField] = n.KeyValue
	}
	return obj, nil
}

// mismatch is the error for a value whose type the location contradicts.
func (w *walker) mismatch(depth int, cur any, want string) error {
	at := "the object"
	if depth > 0 {
		at = w.m.location[:depth].String()
	}
	return fmt.Errorf("location %s: %s is %s, but the location needs %s there", w.m.location, at, typeName(cur), want)
}

// set writes the mutator's value at obj[key], the end of the location.
func (w *walker) set(obj map[string]any, key string, depth int) (bool, error) {
	old, exists := obj[key]
	var value any
	switch w.m.kind {
	case KindAssign, KindAssignMetadata:
		if w.m.externalData != nil {
			p, err := w.newPlaceholder(old, exists)
			if err != nil {
				return false, err
			}
			value = p
			break
		}
		value = copyJSON(w.value)
	case KindModifySet:
		if !exists {
			if w.m.setOp == OpPrune {
				return false, nil
			}
			obj[key] = copyJSON(w.m.setValues)
			return true, nil
		}
		list, ok := old.([]any)
		if !ok {
			return false, fmt.Errorf("location %s: %s is %s, but ModifySet needs a list there", w.m.location, w.m.location[:depth+1], typeName(old))
		}
		value = w.modifySet(list)
	case KindAssignImage:
		s := ""
		if exists {
			var ok bool
			if s, ok = old.(string); !ok {
				return false, fmt.Errorf("location %s: %s is %s, but AssignImage needs a string there", w.m.location, w.m.location[:depth+1], typeName(old))
			}
		}
		value = w.m.image.apply(s)
	}
	if exists && jsonEqual(old, value) {
		return false, nil
	}
	obj[key] = value
	return true, nil
}

// modifySet merges the values into list (appending the missing ones, in
// order) or prunes them from it (keeping the order of the rest).
func (w *walker) modifySet(list []any) []any {
	has := func(l []any, v any) bool {
		for _, x := range l {
			if jsonEqual(x, v) {
				return true
			}
		}
		return false
	}
	if w.m.setOp == OpMerge {
		out := cloneList(list)
		for _, v := range w.m.setValues {
			if !has(out, v) {
				out = append(out, copyJSON(v))
			}
		}
		return out
	}
	out := make([]any, 0, len(list))
	for _, x := range list {
		if !has(w.m.setValues, x) {
			out = append(out, x)
		}
	}
	return out
}

// setElement puts an Assign's value in the keyed list, replacing the
// element with the location's key or appending it when there is none.
func (w *walker) setElement(list []any, n Node, depth int) (bool, bool, any, error) {
	value, ok := w.value.(map[string]any)
	if w.m.kind != KindAssign || !ok || n.Glob {
		// Parse rejects these mutators; this keeps the walk total.
		return false, false, nil, fmt.Errorf("location %s: only an Assign with an object value can set a keyed list element", w.m.location)
	}
	for i, el := range list {
		elObj, ok := el.(map[string]any)
		if !ok {
			return false, false, nil, fmt.Errorf("location %s: an element of %s is %s, but the location needs objects there", w.m.location, w.m.location[:depth], typeName(el))
		}
		if v, ok := elObj[n.KeyField]; ok && keyEqual(n.KeyValue, v) {
			if !w.m.tests.existsOK(depth) {
				return false, false, nil, nil
			}
			if jsonEqual(el, value) {
				return true, false, list, nil
			}
			list[i] = copyJSON(value)
			return true, true, list, nil
		}
	}
	if !w.m.tests.missingOK(depth) {
		return false, false, nil, nil
	}
	return true, true, append(list, copyJSON(value)), nil
}

func cloneList(l []any) []any {
	out := make([]any, len(l), len(l)+1)
	copy(out, l)
	return out
}

// keyEqual compares a list key from a location (a string or an int64) with
// an element's key field. Numbers compare by value, whatever Go type the
// object's decoder gave them.
func keyEqual(key, v any) bool {
	if k, ok := key.(int64); ok {
		f, ok := number(v)
		return ok && f == float64(k)
	}
	s, ok := v.(string)
	return ok && s == key
}

// number returns a JSON number as a float64.
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int32:
		return float64(n), true
	case float32:
		return float64(n), true
	}
	return math.NaN(), false
}

// jsonEqual compares two JSON values, numbers by value: 3 equals 3.0, as
// they are the same JSON.
func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !jsonEqual(xv, yv) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	if fa, ok := number(a); ok {
		fb, ok := number(b)
		return ok && fa == fb
	}
	return reflect.DeepEqual(a, b)
}

// copyJSON deep-copies the maps and lists of a JSON value; other values
// are immutable and shared.
func copyJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = copyJSON(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = copyJSON(e)
		}
		return out
	}
	return v
}
