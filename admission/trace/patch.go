package trace

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
)

// patchOp is one JSON Patch (RFC 6902) operation.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// objectPatch is the JSON Patch that turns before into after, both read in
// the request's API version (admission hands plugins internal objects,
// whose JSON has no API field names). Nil when nothing changed.
func objectPatch(o admission.ObjectInterfaces, gv schema.GroupVersion, before, after runtime.Object) (json.RawMessage, error) {
	if before == nil || after == nil || equality.Semantic.DeepEqual(before, after) {
		return nil, nil
	}
	from, err := versionedJSON(o, gv, before)
	if err != nil {
		return nil, err
	}
	to, err := versionedJSON(o, gv, after)
	if err != nil {
		return nil, err
	}
	ops := diffJSON(nil, "", from, to)
	if len(ops) == 0 {
		return nil, nil
	}
	return json.Marshal(ops)
}

func versionedJSON(o admission.ObjectInterfaces, gv schema.GroupVersion, obj runtime.Object) (any, error) {
	if _, unstructured := obj.(runtime.Unstructured); !unstructured && o != nil {
		v, err := o.GetObjectConvertor().ConvertToVersion(obj, gv)
		if err != nil {
			return nil, fmt.Errorf("converting to %s: %w", gv, err)
		}
		obj = v
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var out any
	return out, json.Unmarshal(raw, &out)
}

// diffJSON appends the operations that turn a into b at path. Objects are
// compared key by key; arrays element by element, with the tail added or
// removed, which reads well for the appends mutations usually make.
func diffJSON(ops []patchOp, path string, a, b any) []patchOp {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			break
		}
		keys := make([]string, 0, len(av)+len(bv))
		for k := range av {
			keys = append(keys, k)
		}
		for k := range bv {
			if _, ok := av[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			p := path + "/" + escapePointer(k)
			x, inA := av[k]
			y, inB := bv[k]
			switch {
			case !inB:
				ops = append(ops, patchOp{Op: "remove", Path: p})
			case !inA:
				ops = append(ops, patchOp{Op: "add", Path: p, Value: y})
			default:
				ops = diffJSON(ops, p, x, y)
			}
		}
		return ops
	case []any:
		bv, ok := b.([]any)
		if !ok {
			break
		}
		n := min(len(av), len(bv))
		for i := range n {
			ops = diffJSON(ops, path+"/"+strconv.Itoa(i), av[i], bv[i])
		}
		for i := len(av) - 1; i >= n; i-- {
			ops = append(ops, patchOp{Op: "remove", Path: path + "/" + strconv.Itoa(i)})
		}
		for i := n; i < len(bv); i++ {
			ops = append(ops, patchOp{Op: "add", Path: path + "/-", Value: bv[i]})
		}
		return ops
	}
	if reflect.DeepEqual(a, b) {
		return ops
	}
	return append(ops, patchOp{Op: "replace", Path: path, Value: b})
}

// escapePointer escapes a key for a JSON Pointer (RFC 6901).
func escapePointer(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}
