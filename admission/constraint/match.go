package constraint

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
)

// Match is a constraint's spec.match, with Gatekeeper's schema and meaning.
type Match struct {
	Kinds              []KindSelector        `json:"kinds,omitempty"`
	Scope              string                `json:"scope,omitempty"` // "*" (default), "Cluster" or "Namespaced"
	Namespaces         []string              `json:"namespaces,omitempty"`
	ExcludedNamespaces []string              `json:"excludedNamespaces,omitempty"`
	LabelSelector      *metav1.LabelSelector `json:"labelSelector,omitempty"`
	NamespaceSelector  *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	Name               string                `json:"name,omitempty"`
	// Source is All (default), Original or Generated: Gatekeeper's
	// expansion of workloads into the resources they generate. Gatehouse
	// does not expand, so every request is an Original one.
	Source string `json:"source,omitempty"`
}

// KindSelector selects kinds by API group and kind.
type KindSelector struct {
	APIGroups []string `json:"apiGroups,omitempty"`
	Kinds     []string `json:"kinds,omitempty"`
}

// Target is what a Match is tested against: one request's object.
type Target struct {
	GVK schema.GroupVersionKind
	// Namespace is the request's namespace, "" for cluster-scoped objects.
	Namespace string
	Name      string
	// Object and OldObject are the request's objects (either may be nil:
	// no OldObject on CREATE, no Object on DELETE).
	Object, OldObject map[string]any
	// NamespaceObject is the object's Namespace (for a Namespace, itself),
	// nil when it is cluster-scoped or the namespace is unknown.
	NamespaceObject map[string]any
	// Attributes is the request as K8sNativeValidation (CEL) templates
	// evaluate it, as upstream's ValidatingAdmissionPolicy sees a request.
	Attributes *admission.VersionedAttributes
	// Explain, when set, is told for each constraint whether its match
	// selected the target, and if not why (for the admission trace).
	Explain func(c *Constraint, matched bool, reason string)
	// Generated marks a resource expanded from a workload by an
	// ExpansionTemplate (Gatekeeper's source Generated), which
	// spec.match.source selects or leaves out.
	Generated bool
}

// The rules below reproduce Gatekeeper's validation-target matcher:
// pkg/target/matcher.go (Matcher.Match, matchAny) feeding each of the request's
// objects to pkg/mutation/match/match.go (Matches and its top-level matchers),
// with globs from pkg/wildcard/wildcard.go (Wildcard.Matches,
// Wildcard.MatchesGenerateName).

// Matches reports whether the constraint's match selects t. When it does
// not, reason says which criterion excluded it (for the admission trace),
// e.g. `kinds: apps/Deployment not in [""/Pod]`, `excludedNamespaces: "kube-system" matches "kube-*"`,
// `namespaceSelector: labels of namespace "dev" do not match env=prod`.
//
// A nil Match selects everything. An error means the match could not be
// evaluated (an invalid selector, a namespaceSelector on a namespaced object
// whose Namespace is unknown, or a target with neither object).
func (m *Match) Matches(t *Target) (ok bool, reason string, err error) {
	// pkg/target/matcher.go, Matcher.Match: "No-op if Match unspecified".
	if m == nil {
		return true, "", nil
	}
	if t == nil {
		return false, "", errors.New("match: no target")
	}
	// pkg/mutation/match/match.go, sourceMatch: All (or unset) selects
	// both kinds of resource.
	switch {
	case m.Source == "Generated" && !t.Generated:
		return false, "source: Generated (only resources expanded from workloads)", nil
	case m.Source == "Original" && t.Generated:
		return false, "source: Original (not resources expanded from workloads)", nil
	}

	// pkg/target/matcher.go, matchAny: the match is run against the object
	// and then the old object, skipping the ones that are absent (no object
	// on DELETE, no old object on CREATE). The target matches when either one
	// matches all criteria; the first error ends the evaluation; with neither
	// object there is an error.
	type miss struct{ role, why string }
	var misses []miss
	for _, o := range []struct {
		role string
		obj  map[string]any
	}{{"object", t.Object}, {"oldObject", t.OldObject}} {
		if o.obj == nil {
			continue
		}
		ok, why, err := m.matchOne(t, o.obj)
		if err != nil {
			return false, "", err
		}
		if ok {
			return true, "", nil
		}
		misses = append(misses, miss{o.role, why})
	}
	switch {
	case len(misses) == 0:
		return false, "", errors.New("match: neither object nor oldObject is set")
	case len(misses) == 1 || misses[0].why == misses[1].why:
		return false, misses[0].why, nil
	default:
		return false, fmt.Sprintf("%s: %s; %s: %s", misses[0].role, misses[0].why, misses[1].role, misses[1].why), nil
	}
}

// matchable is one object of a request, as Gatekeeper's match.Matchable
// sees it: the object (its metadata) and the Namespace it lives in.
type matchable struct {
	gvk          schema.GroupVersionKind
	obj          *unstructured.Unstructured
	name         string // obj.GetName()
	generateName string // obj.GetGenerateName()
	namespace    string // obj.GetNamespace()
	isNamespace  bool   // match.IsNamespace(obj)
	ns           *unstructured.Unstructured
	nsName       string // ns.Name when ns != nil
}

func newMatchable(t *Target, obj map[string]any) *matchable {
	u := &unstructured.Unstructured{Object: obj}
	mt := &matchable{
		// Gatekeeper reads the kind from the object it decoded from the
		// request; in an admission request that is the request's kind.
		gvk:          t.GVK,
		obj:          u,
		name:         u.GetName(),
		generateName: u.GetGenerateName(),
		namespace:    u.GetNamespace(),
	}
	// The apiserver makes metadata.name and metadata.namespace agree with
	// the request before admission (rest.EnsureObjectNamespaceMatchesRequestNamespace
	// fills an empty namespace in), so the request's values stand in for a
	// missing metadata field.
	if mt.name == "" {
		mt.name = t.Name
	}
	if mt.namespace == "" {
		mt.namespace = t.Namespace
	}
	// pkg/mutation/match/match.go, IsNamespace: kind Namespace in the core group.
	mt.isNamespace = isNamespaceKind(t.GVK)
	if t.NamespaceObject != nil {
		mt.ns = &unstructured.Unstructured{Object: t.NamespaceObject}
		// Gatekeeper looks the Namespace up by the request's namespace
		// (pkg/target/matcher.go, Matcher.Match: m.cache.GetNamespace(gkReq.Namespace)).
		mt.nsName = t.Namespace
		if mt.nsName == "" {
			mt.nsName = mt.ns.GetName()
		}
	}
	return mt
}

// matchOne is pkg/mutation/match/match.go, Matches: the top-level matchers
// in upstream's order; the first one that does not match (or fails) ends
// the evaluation. (Upstream's sourceMatch is always true here: constraints
// have no source field in this schema and the default source is All.)
func (m *Match) matchOne(t *Target, obj map[string]any) (bool, string, error) {
	mt := newMatchable(t, obj)
	for _, fn := range []func(*matchable) (bool, string, error){
		m.kindsMatch,
		m.scopeMatch,
		m.namespacesMatch,
		m.excludedNamespacesMatch,
		m.labelSelectorMatch,
		m.namespaceSelectorMatch,
		m.namesMatch,
	} {
		ok, why, err := fn(mt)
		if err != nil || !ok {
			return false, why, err
		}
	}
	return true, "", nil
}

// kindsMatch: pkg/mutation/match/match.go, kindsMatch. No kinds selects
// every kind; otherwise one entry must match both the kind (no kinds or "*"
// or equal) and the group (no apiGroups or "*" or equal; "" is the core group).
func (m *Match) kindsMatch(mt *matchable) (bool, string, error) {
	if len(m.Kinds) == 0 {
		return true, "", nil
	}
	for _, kk := range m.Kinds {
		kindMatches := len(kk.Kinds) == 0 || slices.Contains(kk.Kinds, "*") || slices.Contains(kk.Kinds, mt.gvk.Kind)
		if !kindMatches {
			continue
		}
		groupMatches := len(kk.APIGroups) == 0 || slices.Contains(kk.APIGroups, "*") || slices.Contains(kk.APIGroups, mt.gvk.Group)
		if groupMatches {
			return true, "", nil
		}
	}
	var sel []string
	for _, kk := range m.Kinds {
		groups, kinds := kk.APIGroups, kk.Kinds
		if len(groups) == 0 {
			groups = []string{"*"}
		}
		if len(kinds) == 0 {
			kinds = []string{"*"}
		}
		for _, g := range groups {
			for _, k := range kinds {
				sel = append(sel, groupKind(g, k))
			}
		}
	}
	return false, fmt.Sprintf("kinds: %s not in [%s]", groupKind(mt.gvk.Group, mt.gvk.Kind), strings.Join(sel, " ")), nil
}

func groupKind(group, kind string) string {
	if group == "" {
		group = `""`
	}
	return group + "/" + kind
}

// scopeMatch: pkg/mutation/match/match.go, scopeMatch. An object is
// namespaced when it has a namespace (its own or a known Namespace) and is
// not a Namespace; a Namespace counts as cluster-scoped. Any scope other than
// "Cluster" or "Namespaced" ("*", empty, typos) selects everything.
func (m *Match) scopeMatch(mt *matchable) (bool, string, error) {
	hasNamespace := mt.namespace != "" || mt.ns != nil
	switch m.Scope {
	case "Cluster":
		if mt.isNamespace || !hasNamespace {
			return true, "", nil
		}
		return false, fmt.Sprintf("scope: Cluster but object is namespaced (namespace %q)", mt.namespaceName()), nil
	case "Namespaced":
		if !mt.isNamespace && hasNamespace {
			return true, "", nil
		}
		return false, "scope: Namespaced but object is cluster-scoped", nil
	default:
		return true, "", nil
	}
}

// namespaceName is the namespace name upstream's namespacesMatch and
// excludedNamespacesMatch test, in their order: a Namespace's own name, the
// known Namespace's name, the object's namespace; "" for a cluster-scoped
// object.
func (mt *matchable) namespaceName() string {
	switch {
	case mt.isNamespace:
		return mt.name
	case mt.ns != nil:
		return mt.nsName
	default:
		return mt.namespace
	}
}

// namespacesMatch: pkg/mutation/match/match.go, namespacesMatch. The
// namespace (a Namespace's own name) must match one of the globs; a
// cluster-scoped object that is not a Namespace is never excluded by it.
func (m *Match) namespacesMatch(mt *matchable) (bool, string, error) {
	if len(m.Namespaces) == 0 {
		return true, "", nil
	}
	ns := mt.namespaceName()
	if ns == "" {
		return true, "", nil
	}
	for _, n := range m.Namespaces {
		if wildcardMatches(n, ns) {
			return true, "", nil
		}
	}
	return false, fmt.Sprintf("namespaces: %q not in %s", ns, quoteList(m.Namespaces)), nil
}

// excludedNamespacesMatch: pkg/mutation/match/match.go,
// excludedNamespacesMatch. The namespace (a Namespace's own name) must match
// none of the globs; a cluster-scoped object that is not a Namespace is never
// excluded by it.
func (m *Match) excludedNamespacesMatch(mt *matchable) (bool, string, error) {
	if len(m.ExcludedNamespaces) == 0 {
		return true, "", nil
	}
	ns := mt.namespaceName()
	if ns == "" {
		return true, "", nil
	}
	for _, n := range m.ExcludedNamespaces {
		if wildcardMatches(n, ns) {
			return false, fmt.Sprintf("excludedNamespaces: %q matches %q", ns, n), nil
		}
	}
	return true, "", nil
}

// labelSelectorMatch: pkg/mutation/match/match.go, labelSelectorMatch. The
// selector is tested against the labels of the object being matched (the
// new object, then the old one: see Matches).
func (m *Match) labelSelectorMatch(mt *matchable) (bool, string, error) {
	if m.LabelSelector == nil {
		return true, "", nil
	}
	selector, err := metav1.LabelSelectorAsSelector(m.LabelSelector)
	if err != nil {
		return false, "", fmt.Errorf("labelSelector: %w", err)
	}
	if selector.Matches(labels.Set(mt.obj.GetLabels())) {
		return true, "", nil
	}
	return false, fmt.Sprintf("labelSelector: labels of %s do not match %s", describeKindName(mt), selector), nil
}

// namespaceSelectorMatch: pkg/mutation/match/match.go,
// namespaceSelectorMatch. A cluster-scoped object that is not a Namespace
// always matches (before the selector is even parsed); a Namespace is
// tested on its own labels; any other object on its Namespace's labels,
// which is an error when that Namespace is unknown.
func (m *Match) namespaceSelectorMatch(mt *matchable) (bool, string, error) {
	if m.NamespaceSelector == nil {
		return true, "", nil
	}
	if !mt.isNamespace && mt.ns == nil && mt.namespace == "" {
		return true, "", nil
	}
	selector, err := metav1.LabelSelectorAsSelector(m.NamespaceSelector)
	if err != nil {
		return false, "", fmt.Errorf("namespaceSelector: %w", err)
	}
	if mt.isNamespace {
		if selector.Matches(labels.Set(mt.obj.GetLabels())) {
			return true, "", nil
		}
		return false, fmt.Sprintf("namespaceSelector: labels of namespace %q do not match %s", mt.name, selector), nil
	}
	if mt.ns == nil {
		return false, "", fmt.Errorf("namespaceSelector: namespace %q of the namespaced object is unknown", mt.namespace)
	}
	if selector.Matches(labels.Set(mt.ns.GetLabels())) {
		return true, "", nil
	}
	return false, fmt.Sprintf("namespaceSelector: labels of namespace %q do not match %s", mt.nsName, selector), nil
}

// namesMatch: pkg/mutation/match/match.go, namesMatch. An empty name
// selects every name; otherwise the glob must match the object's name, or
// its metadata.generateName (pkg/wildcard, MatchesGenerateName).
func (m *Match) namesMatch(mt *matchable) (bool, string, error) {
	if m.Name == "" {
		return true, "", nil
	}
	if wildcardMatches(m.Name, mt.name) || wildcardMatchesGenerateName(m.Name, mt.generateName) {
		return true, "", nil
	}
	if mt.name == "" && mt.generateName != "" {
		return false, fmt.Sprintf("name: generateName %q does not match %q", mt.generateName, m.Name), nil
	}
	return false, fmt.Sprintf("name: %q does not match %q", mt.name, m.Name), nil
}

// wildcardMatches is pkg/wildcard/wildcard.go, Wildcard.Matches: "*x*"
// matches names containing x, "*x" a suffix, "x*" a prefix ("*" alone
// matches everything); otherwise (including a "*" in the middle, which is
// literal) the name must be equal.
func wildcardMatches(w, candidate string) bool {
	switch {
	case strings.HasPrefix(w, "*") && strings.HasSuffix(w, "*"):
		return strings.Contains(candidate, strings.TrimSuffix(strings.TrimPrefix(w, "*"), "*"))
	case strings.HasPrefix(w, "*"):
		return strings.HasSuffix(candidate, strings.TrimPrefix(w, "*"))
	case strings.HasSuffix(w, "*"):
		return strings.HasPrefix(candidate, strings.TrimSuffix(w, "*"))
	default:
		return w == candidate
	}
}

// wildcardMatchesGenerateName is pkg/wildcard/wildcard.go,
// Wildcard.MatchesGenerateName: only "*x*" (contains) and "x*" (prefix)
// globs can match a generateName.
func wildcardMatchesGenerateName(w, candidate string) bool {
	switch {
	case strings.HasPrefix(w, "*") && strings.HasSuffix(w, "*"):
		return strings.Contains(candidate, strings.TrimSuffix(strings.TrimPrefix(w, "*"), "*"))
	case strings.HasSuffix(w, "*"):
		return strings.HasPrefix(candidate, strings.TrimSuffix(w, "*"))
	default:
		return false
	}
}

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, " ") + "]"
}

func describeKindName(mt *matchable) string {
	if mt.name == "" {
		return mt.gvk.Kind
	}
	return fmt.Sprintf("%s %q", mt.gvk.Kind, mt.name)
}

// isNamespaceKind reports whether gvk is a core Namespace, which spec.match
// treats as its own namespace.
func isNamespaceKind(gvk schema.GroupVersionKind) bool {
	return gvk.Group == "" && gvk.Kind == "Namespace"
}
