package mutation

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/gatehouse-dev/gatehouse/admission/constraint"
)

// Group is the API group of Gatekeeper's mutators.
const Group = "mutations.gatekeeper.sh"

// The mutator kinds.
const (
	KindAssign         = "Assign"
	KindAssignMetadata = "AssignMetadata"
	KindModifySet      = "ModifySet"
	KindAssignImage    = "AssignImage"
)

// servedVersions are the versions Gatekeeper serves for each kind, the
// storage version first. They share one schema, so any of them is read the
// same way.
var servedVersions = map[string][]string{
	KindAssign:         {"v1", "v1alpha1", "v1beta1"},
	KindAssignMetadata: {"v1", "v1alpha1", "v1beta1"},
	KindModifySet:      {"v1", "v1alpha1", "v1beta1"},
	KindAssignImage:    {"v1alpha1"},
}

// Path test conditions (spec.parameters.pathTests[].condition).
const (
	MustExist    = "MustExist"
	MustNotExist = "MustNotExist"
)

// ModifySet operations (spec.parameters.operation).
const (
	OpMerge = "merge"
	OpPrune = "prune"
)

// Mutator is one parsed mutator object. It is immutable, so a System can
// share it between requests.
type Mutator struct {
	kind, name string
	generation int64
	location   Path
	// applyTo is nil for AssignMetadata, which has no such field and
	// applies to every kind.
	applyTo []applyTo
	match   *constraint.Match
	tests   tester

	// Assign and AssignMetadata: a constant value, a metadata field
	// ("name" or "namespace") read from the object being mutated, or a
	// provider's answer.
	value        any
	fromMetadata string
	externalData *ExternalDataSpec
	// ModifySet.
	setOp     string
	setValues []any
	// AssignImage.
	image imageParts
}

// Kind is the mutator's kind, e.g. Assign.
func (m *Mutator) Kind() string { return m.kind }

// Name is the mutator's metadata.name.
func (m *Mutator) Name() string { return m.name }

// Location is the parsed spec.location.
func (m *Mutator) Location() Path { return slices.Clone(m.location) }

// ID is the mutator's identity in a System: "<kind>//<name>" (Gatekeeper's
// "<kind>/<namespace>/<name>", mutators being cluster-scoped).
func (m *Mutator) ID() string { return id(m.kind, m.name) }

// String is Gatekeeper's name for the mutator in its mutation log and the
// gatekeeper.sh/mutations annotation: "<kind>/<namespace>/<name>:<generation>".
func (m *Mutator) String() string { return fmt.Sprintf("%s:%d", m.ID(), m.generation) }

func id(kind, name string) string { return kind + "//" + name }

// applyTo is one spec.applyTo entry: exact groups, versions and kinds (no
// globs), and the admission operations.
type applyTo struct {
	groups, versions, kinds, operations []string
}

// Parse reads a mutator object (Assign, AssignMetadata, ModifySet or
// AssignImage in mutations.gatekeeper.sh) and validates it as Gatekeeper's
// webhook does before it admits one. Unknown spec fields are errors. Errors
// name the field, e.g.
//
//	spec.location: Assign can't change metadata; use AssignMetadata
//	spec.parameters.assign: exactly one of value, fromMetadata or externalData must be set
func Parse(u *unstructured.Unstructured) (*Mutator, error) {
	gvk := u.GroupVersionKind()
	versions, ok := servedVersions[gvk.Kind]
	if !ok || gvk.Group != Group {
		return nil, fmt.Errorf("kind: %s is not a mutator (want %s, %s, %s or %s in %s)", gvk.GroupKind(), KindAssign, KindAssignMetadata, KindModifySet, KindAssignImage, Group)
	}
	if !slices.Contains(versions, gvk.Version) {
		return nil, fmt.Errorf("apiVersion: %s is not served for %s (served: %s)", gvk.GroupVersion(), gvk.Kind, strings.Join(versions, ", "))
	}
	m := &Mutator{kind: gvk.Kind, name: u.GetName(), generation: u.GetGeneration()}
	if m.name == "" {
		return nil, errors.New("metadata.name: Required value")
	}
	// pkg/mutation/mutators/core.ValidateName.
	if len(m.name) > 63 {
		return nil, fmt.Errorf("metadata.name: maximum name length is 63 characters, got %d", len(m.name))
	}
	raw, ok := u.Object["spec"]
	if !ok || raw == nil {
		return nil, errors.New("spec: Required value")
	}
	specMap, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("spec: must be an object, got %s", typeName(raw))
	}
	spec := &fields{path: "spec", m: specMap}
	var err error
	switch m.kind {
	case KindAssign:
		err = m.parseAssign(spec)
	case KindAssignMetadata:
		err = m.parseAssignMetadata(spec)
	case KindModifySet:
		err = m.parseModifySet(spec)
	case KindAssignImage:
		err = m.parseAssignImage(spec)
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// parseCommon reads what every kind has: location and match, and applyTo
// for the kinds that have it (all but AssignMetadata, where Gatekeeper's
// schema has no such field).
func (m *Mutator) parseCommon(spec *fields, withApplyTo bool) error {
	loc, err := spec.str("location")
	if err != nil {
		return err
	}
	if loc == "" {
		return errors.New("spec.location: Required value")
	}
	if m.location, err = parsePath(loc); err != nil {
		return fmt.Errorf("spec.location: invalid path %q: %w", loc, err)
	}
	if err := m.parseMatch(spec); err != nil {
		return err
	}
	if !withApplyTo {
		if _, ok := spec.m["applyTo"]; ok {
			return fmt.Errorf("spec.applyTo: %s has no applyTo (it applies to every kind; use spec.match.kinds)", m.kind)
		}
		return nil
	}
	return m.parseApplyTo(spec)
}

// matchNamePattern is the pattern Gatekeeper's CRD puts on match.name,
// match.namespaces and match.excludedNamespaces: a name with an optional
// leading and trailing glob.
var matchNamePattern = regexp.MustCompile(`^\*?[-:a-z0-9]*\*?$`)

func (m *Mutator) parseMatch(spec *fields) error {
	raw, ok := spec.m["match"]
	spec.seen("match")
	if !ok || raw == nil {
		return nil
	}
	mm, ok := raw.(map[string]any)
	if !ok {
		return fmt.Errorf("spec.match: must be an object, got %s", typeName(raw))
	}
	match := &constraint.Match{}
	// Strict, so that a misspelled criterion is an error instead of a
	// mutator that matches more than its author meant.
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(mm, match, true); err != nil {
		return fmt.Errorf("spec.match: %w", err)
	}
	switch match.Source {
	case "", "All", "Original", "Generated":
	default:
		return fmt.Errorf(`spec.match.source: Unsupported value %q: supported values: "All", "Generated", "Original"`, match.Source)
	}
	check := func(field string, values ...string) error {
		for i, v := range values {
			if !matchNamePattern.MatchString(v) {
				if field != "name" {
					field = fmt.Sprintf("%s[%d]", field, i)
				}
				return fmt.Errorf("spec.match.%s: Invalid value %q: must match %s (a name with an optional leading and trailing *)", field, v, matchNamePattern)
			}
		}
		return nil
	}
	if err := check("namespaces", match.Namespaces...); err != nil {
		return err
	}
	if err := check("excludedNamespaces", match.ExcludedNamespaces...); err != nil {
		return err
	}
	if match.Name != "" {
		if err := check("name", match.Name); err != nil {
			return err
		}
	}
	// Selectors are checked here rather than on every request: in
	// Gatekeeper an invalid one fails each mutation request it is tested on.
	for field, sel := range map[string]*metav1.LabelSelector{"labelSelector": match.LabelSelector, "namespaceSelector": match.NamespaceSelector} {
		if _, err := metav1.LabelSelectorAsSelector(sel); err != nil {
			return fmt.Errorf("spec.match.%s: %w", field, err)
		}
	}
	m.match = match
	return nil
}

// validOperations are the applyTo operations Gatekeeper accepts: the ones
// its mutation webhook runs on, and "*".
var validOperations = []string{"CREATE", "UPDATE", "*"}

// parseApplyTo reads spec.applyTo as pkg/mutation/mutators/core
// NewValidatedBindings and pkg/mutation/match ValidateOperations check it.
func (m *Mutator) parseApplyTo(spec *fields) error {
	list, err := spec.list("applyTo")
	if err != nil {
		return err
	}
	if len(list) == 0 {
		return fmt.Errorf("spec.applyTo: Required value: %s needs the groups, versions and kinds it mutates", m.kind)
	}
	for i, raw := range list {
		f, err := spec.item("applyTo", i, raw)
		if err != nil {
			return err
		}
		var a applyTo
		for _, p := range []struct {
			key string
			to  *[]string
		}{{"groups", &a.groups}, {"versions", &a.versions}, {"kinds", &a.kinds}, {"operations", &a.operations}} {
			if *p.to, err = f.strs(p.key); err != nil {
				return err
			}
		}
		if err := f.done(); err != nil {
			return err
		}
		if len(a.groups) == 0 || len(a.versions) == 0 || len(a.kinds) == 0 {
			return fmt.Errorf("%s: groups, versions and kinds must all be set", f.path)
		}
		for j, op := range a.operations {
			if !slices.Contains(validOperations, op) {
				return fmt.Errorf(`%s.operations[%d]: Unsupported value %q: supported values: "CREATE", "UPDATE", "*" (Gatekeeper mutates only on create and update)`, f.path, j, op)
			}
			if slices.Contains(a.operations[:j], op) {
				return fmt.Errorf("%s.operations[%d]: Duplicate value %q", f.path, j, op)
			}
		}
		if slices.Contains(a.operations, "*") && len(a.operations) > 1 {
			return fmt.Errorf(`%s.operations: "*" must not be combined with other operations`, f.path)
		}
		m.applyTo = append(m.applyTo, a)
	}
	return nil
}

func (m *Mutator) parseAssign(spec *fields) error {
	if err := m.parseCommon(spec, true); err != nil {
		return err
	}
	params, err := spec.obj("parameters")
	if err != nil {
		return err
	}
	if err := spec.done(); err != nil {
		return err
	}
	if params == nil {
		return errors.New("spec.parameters.assign: Required value")
	}
	if _, ok := params.m["assignIf"]; ok {
		// Gatekeeper removed assignIf in 2021 (PR #1548): testing the current
		// value lets mutators oscillate forever. Its CRD no longer has the
		// field, so the API server would drop it and assign unconditionally.
		return errors.New("spec.parameters.assignIf: not supported: Gatekeeper removed assignIf because value conditions let mutators oscillate forever; use pathTests")
	}
	if err := m.parsePathTests(params); err != nil {
		return err
	}
	if err := m.parseAssignField(params); err != nil {
		return err
	}
	if err := params.done(); err != nil {
		return err
	}
	// pkg/mutation/mutators/assign, MutatorForAssign.
	if m.location[0] == (Node{Field: "metadata"}) {
		return errors.New("spec.location: Assign can't change metadata; use AssignMetadata")
	}
	if err := checkKeyNotChanged(m.location); err != nil {
		return err
	}
	last := m.location[len(m.location)-1]
	if !last.List {
		return nil
	}
	switch {
	case m.externalData != nil:
		return fmt.Errorf("spec.location: %s: cannot assign external data response to a list", m.location)
	case m.fromMetadata != "":
		return fmt.Errorf("spec.parameters.assign.fromMetadata: cannot assign a metadata field to the list element %s", m.location)
	case last.Glob:
		return fmt.Errorf("spec.location: %s: can't assign to a globbed list element; name the element's key", m.location)
	}
	obj, ok := m.value.(map[string]any)
	if !ok {
		return fmt.Errorf("spec.parameters.assign.value: must be an object to be put in the keyed list at %s, got %s", m.location, typeName(m.value))
	}
	if kv, ok := obj[last.KeyField]; !ok || !keyEqual(last.KeyValue, kv) {
		return fmt.Errorf("spec.parameters.assign.value.%s: must be %s, the key the location %s selects, got %s", quoteName(last.KeyField), keyValueString(last), m.location, valueString(kv, ok))
	}
	return nil
}

// keyValueString renders a list node's key value as the path language
// writes it.
func keyValueString(n Node) string {
	if v, ok := n.KeyValue.(int64); ok {
		return fmt.Sprint(v)
	}
	return fmt.Sprintf("%q", n.KeyValue)
}

func valueString(v any, ok bool) string {
	if !ok {
		return "nothing"
	}
	if s, isString := v.(string); isString {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%v (%s)", v, typeName(v))
}

// checkKeyNotChanged is pkg/mutation/mutators/core.CheckKeyNotChanged: a
// location like spec.containers[name: foo].name would change the key that
// selected the element.
func checkKeyNotChanged(p Path) error {
	if len(p) < 2 {
		return nil
	}
	prev, last := p[len(p)-2], p[len(p)-1]
	if prev.List && last.Field == prev.KeyField {
		return fmt.Errorf("spec.location: %s would change the list element's key %q, which is not allowed", p, prev.KeyField)
	}
	return nil
}

// parseAssignField reads spec.parameters.assign (Assign and AssignMetadata):
// exactly one of value, fromMetadata or externalData.
func (m *Mutator) parseAssignField(params *fields) error {
	a, err := params.obj("assign")
	if err != nil {
		return err
	}
	if a == nil {
		return errors.New("spec.parameters.assign: Required value")
	}
	// A null value counts as unset, as in Gatekeeper (types.Anything).
	var set []string
	for _, k := range []string{"value", "fromMetadata", "externalData"} {
		if v, ok := a.m[k]; ok && v != nil {
			set = append(set, k)
		}
	}
	if len(set) != 1 {
		return fmt.Errorf("spec.parameters.assign: exactly one of value, fromMetadata or externalData must be set, got %d", len(set))
	}
	switch set[0] {
	case "externalData":
		if m.externalData, err = parseExternalData(a); err != nil {
			return err
		}
	case "value":
		a.seen("value")
		m.value = copyJSON(a.m["value"])
	case "fromMetadata":
		fm, err := a.obj("fromMetadata")
		if err != nil {
			return err
		}
		if m.fromMetadata, err = fm.str("field"); err != nil {
			return err
		}
		if err := fm.done(); err != nil {
			return err
		}
		if m.fromMetadata != "namespace" && m.fromMetadata != "name" {
			return fmt.Errorf(`spec.parameters.assign.fromMetadata.field: Unsupported value %q: supported values: "namespace", "name"`, m.fromMetadata)
		}
	}
	return a.done()
}

// parseExternalData reads assign.externalData with Gatekeeper's defaults
// (those of its CRD, for objects read before the API server defaults
// them) and rules.
func parseExternalData(a *fields) (*ExternalDataSpec, error) {
	ed, err := a.obj("externalData")
	if err != nil {
		return nil, err
	}
	spec := &ExternalDataSpec{}
	if spec.Provider, err = ed.str("provider"); err != nil {
		return nil, err
	}
	if spec.Provider == "" {
		return nil, errors.New("spec.parameters.assign.externalData.provider: Required value")
	}
	if spec.DataSource, err = ed.str("dataSource"); err != nil {
		return nil, err
	}
	switch spec.DataSource {
	case "":
		spec.DataSource = DataSourceValueAtLocation
	case DataSourceValueAtLocation, DataSourceUsername:
	default:
		return nil, fmt.Errorf(`spec.parameters.assign.externalData.dataSource: Unsupported value %q: supported values: "ValueAtLocation", "Username"`, spec.DataSource)
	}
	if spec.FailurePolicy, err = ed.str("failurePolicy"); err != nil {
		return nil, err
	}
	switch spec.FailurePolicy {
	case "":
		spec.FailurePolicy = FailurePolicyFail
	case FailurePolicyFail, FailurePolicyIgnore, FailurePolicyUseDefault:
	default:
		return nil, fmt.Errorf(`spec.parameters.assign.externalData.failurePolicy: Unsupported value %q: supported values: "UseDefault", "Ignore", "Fail"`, spec.FailurePolicy)
	}
	if spec.Default, err = ed.str("default"); err != nil {
		return nil, err
	}
	if spec.FailurePolicy == FailurePolicyUseDefault && spec.Default == "" {
		return nil, errors.New("spec.parameters.assign.externalData.default: `default` must not be empty when `failurePolicy` is set to `UseDefault`")
	}
	return spec, ed.done()
}

// parsePathTests reads spec.parameters.pathTests as pkg/mutation/path/tester
// New checks them.
func (m *Mutator) parsePathTests(params *fields) error {
	list, err := params.list("pathTests")
	if err != nil {
		return err
	}
	m.tests = tester{}
	lowestMustNot, highestMust := -1, -1
	for i, raw := range list {
		f, err := params.item("pathTests", i, raw)
		if err != nil {
			return err
		}
		sub, err := f.str("subPath")
		if err != nil {
			return err
		}
		cond, err := f.str("condition")
		if err != nil {
			return err
		}
		if err := f.done(); err != nil {
			return err
		}
		// Gatekeeper accepts an empty subPath (a test of nothing) and an
		// empty condition (which then blocks the mutation at that depth
		// whether or not the path exists); both are mistakes.
		if sub == "" {
			return fmt.Errorf("%s.subPath: Required value", f.path)
		}
		if cond != MustExist && cond != MustNotExist {
			return fmt.Errorf(`%s.condition: Unsupported value %q: supported values: "MustExist", "MustNotExist"`, f.path, cond)
		}
		p, err := parsePath(sub)
		if err != nil {
			return fmt.Errorf("%s.subPath: invalid path %q: %w", f.path, sub, err)
		}
		if !p.isPrefix(m.location) {
			return fmt.Errorf("%s.subPath: %s is not a prefix of the location %s", f.path, p, m.location)
		}
		depth := len(p) - 1
		if c, ok := m.tests[depth]; ok && c != cond {
			return fmt.Errorf("%s: conflicting path test conditions: %s is marked both MustExist and MustNotExist", f.path, p)
		}
		m.tests[depth] = cond
		if cond == MustNotExist && lowestMustNot < 0 {
			lowestMustNot = i
		}
		if cond == MustExist {
			highestMust = i
		}
	}
	// Gatekeeper's tester rejects a MustExist test listed after a
	// MustNotExist one (it compares list positions, meaning to catch a
	// required child under a forbidden parent); so does Gatehouse, so that a
	// mutator accepted here is accepted there.
	if lowestMustNot >= 0 && highestMust > lowestMustNot {
		return fmt.Errorf("spec.parameters.pathTests[%d]: conflicting path test conditions: a MustExist test may not follow the MustNotExist test pathTests[%d]", highestMust, lowestMustNot)
	}
	return nil
}

func (m *Mutator) parseAssignMetadata(spec *fields) error {
	if err := m.parseCommon(spec, false); err != nil {
		return err
	}
	params, err := spec.obj("parameters")
	if err != nil {
		return err
	}
	if err := spec.done(); err != nil {
		return err
	}
	if params == nil {
		return errors.New("spec.parameters.assign: Required value")
	}
	if err := m.parseAssignField(params); err != nil {
		return err
	}
	if err := params.done(); err != nil {
		return err
	}
	// pkg/mutation/mutators/assignmeta: only a label or an annotation, and
	// only ever added (the tester below keeps an existing one).
	l := m.location
	if len(l) != 3 || l[0] != (Node{Field: "metadata"}) || (l[1] != Node{Field: "labels"} && l[1] != Node{Field: "annotations"}) || l[2].List {
		return fmt.Errorf("spec.location: AssignMetadata can only set metadata.labels.<key> or metadata.annotations.<key>, got %s", l)
	}
	if m.value != nil {
		if _, ok := m.value.(string); !ok {
			return fmt.Errorf("spec.parameters.assign.value: must be a string for AssignMetadata, got %s", typeName(m.value))
		}
	}
	if m.externalData != nil && m.externalData.DataSource != DataSourceUsername {
		return fmt.Errorf("spec.parameters.assign.externalData.dataSource: only username data source is supported for assignmetadata %s", m.name)
	}
	m.tests = tester{2: MustNotExist}
	return nil
}

func (m *Mutator) parseModifySet(spec *fields) error {
	if err := m.parseCommon(spec, true); err != nil {
		return err
	}
	params, err := spec.obj("parameters")
	if err != nil {
		return err
	}
	if err := spec.done(); err != nil {
		return err
	}
	if params == nil {
		return errors.New("spec.parameters.values.fromList: Required value")
	}
	if err := m.parsePathTests(params); err != nil {
		return err
	}
	if m.setOp, err = params.str("operation"); err != nil {
		return err
	}
	switch m.setOp {
	case "":
		m.setOp = OpMerge // the CRD's default
	case OpMerge, OpPrune:
	default:
		return fmt.Errorf(`spec.parameters.operation: Unsupported value %q: supported values: "merge", "prune"`, m.setOp)
	}
	values, err := params.obj("values")
	if err != nil {
		return err
	}
	if err := params.done(); err != nil {
		return err
	}
	// Gatekeeper accepts a ModifySet without values; merging it then sets
	// a missing list to null. Gatehouse asks for the list (it may be empty).
	if values == nil {
		return errors.New("spec.parameters.values.fromList: Required value")
	}
	raw, ok := values.m["fromList"]
	if !ok || raw == nil {
		return errors.New("spec.parameters.values.fromList: Required value")
	}
	list, err := values.list("fromList")
	if err != nil {
		return err
	}
	if err := values.done(); err != nil {
		return err
	}
	m.setValues = copyJSON(list).([]any)
	// pkg/mutation/mutators/modifyset: the location names the field that
	// holds the list, never an element of it.
	if m.location[0] == (Node{Field: "metadata"}) {
		return errors.New("spec.location: ModifySet can't change metadata")
	}
	if last := m.location[len(m.location)-1]; last.List {
		return fmt.Errorf("spec.location: %s ends in a keyed list element; a ModifySet location names the field that holds the list", m.location)
	}
	return nil
}

func (m *Mutator) parseAssignImage(spec *fields) error {
	if err := m.parseCommon(spec, true); err != nil {
		return err
	}
	params, err := spec.obj("parameters")
	if err != nil {
		return err
	}
	if err := spec.done(); err != nil {
		return err
	}
	if params == nil {
		params = &fields{path: "spec.parameters", m: map[string]any{}}
	}
	if err := m.parsePathTests(params); err != nil {
		return err
	}
	for _, p := range []struct {
		key string
		to  *string
	}{{"assignDomain", &m.image.domain}, {"assignPath", &m.image.path}, {"assignTag", &m.image.tag}} {
		if *p.to, err = params.str(p.key); err != nil {
			return err
		}
	}
	if err := params.done(); err != nil {
		return err
	}
	// pkg/mutation/mutators/assignimage, MutatorForAssignImage.
	if m.location[0] == (Node{Field: "metadata"}) {
		return errors.New("spec.location: AssignImage can't change metadata")
	}
	if m.location[len(m.location)-1].List {
		return fmt.Errorf("spec.location: %s ends in a list element; AssignImage sets a string field", m.location)
	}
	if err := checkKeyNotChanged(m.location); err != nil {
		return err
	}
	return m.image.validate()
}

// fields reads one object of a mutator's spec, tracking which keys were
// read so that done can reject the others.
type fields struct {
	path string
	m    map[string]any
	read map[string]bool
}

func (f *fields) seen(key string) {
	if f.read == nil {
		f.read = map[string]bool{}
	}
	f.read[key] = true
}

// done rejects the keys that were not read, as strict decoding would.
func (f *fields) done() error {
	var unknown []string
	for k := range f.m {
		if !f.read[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	return fmt.Errorf("%s: unknown field %q", f.path, unknown[0])
}

func (f *fields) str(key string) (string, error) {
	f.seen(key)
	raw, ok := f.m[key]
	if !ok || raw == nil {
		return "", nil
	}
	s, ok := raw.(string)
	if !ok {
		return "", fmt.Errorf("%s.%s: must be a string, got %s", f.path, key, typeName(raw))
	}
	return s, nil
}

func (f *fields) list(key string) ([]any, error) {
	f.seen(key)
	raw, ok := f.m[key]
	if !ok || raw == nil {
		return nil, nil
	}
	l, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("%s.%s: must be a list, got %s", f.path, key, typeName(raw))
	}
	return l, nil
}

func (f *fields) strs(key string) ([]string, error) {
	l, err := f.list(key)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(l))
	for i, raw := range l {
		s, ok := raw.(string)
		if !ok {
			return nil, fmt.Errorf("%s.%s[%d]: must be a string, got %s", f.path, key, i, typeName(raw))
		}
		out[i] = s
	}
	return out, nil
}

// obj returns the object at key, nil when absent.
func (f *fields) obj(key string) (*fields, error) {
	f.seen(key)
	raw, ok := f.m[key]
	if !ok || raw == nil {
		return nil, nil
	}
	o, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s.%s: must be an object, got %s", f.path, key, typeName(raw))
	}
	return &fields{path: f.path + "." + key, m: o}, nil
}

// item is element i of the list at key, which must be an object.
func (f *fields) item(key string, i int, raw any) (*fields, error) {
	path := fmt.Sprintf("%s.%s[%d]", f.path, key, i)
	o, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: must be an object, got %s", path, typeName(raw))
	}
	return &fields{path: path, m: o}, nil
}

// typeName names a JSON value's type for error messages.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int, int32, int64, float32, float64:
		return "a number"
	default:
		return fmt.Sprintf("%T", v)
	}
}
