package constraint

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Process is a part of Gatekeeper that its Config's spec.match can keep
// away from namespaces (gatekeeper pkg/controller/config/process).
type Process string

// Gatekeeper's processes. ProcessAll ("*") in a Config stands for all four.
const (
	ProcessAudit    Process = "audit"
	ProcessWebhook  Process = "webhook"
	ProcessMutation Process = "mutation-webhook"
	ProcessSync     Process = "sync"
	ProcessAll      Process = "*"
)

var allProcesses = []Process{ProcessAudit, ProcessWebhook, ProcessMutation, ProcessSync}

// IgnoreLabel on a Namespace keeps Gatekeeper's validating and mutating
// webhooks away from it: their configurations select namespaces without it.
// Only exempt namespaces may carry it (see IgnoreLabelRefusal).
const IgnoreLabel = "admission.gatekeeper.sh/ignore"

// ExemptNamespace is the namespace Gatekeeper's webhook configurations
// always leave out (its chart's --exempt-namespace, the namespace it runs
// in), which may carry IgnoreLabel.
const ExemptNamespace = GatekeeperNamespace

// Exempt are the namespaces exempt besides ExemptNamespace (gatehouse
// up --exempt-namespace): names, or globs "prefix*" and "*suffix" as
// Gatekeeper's --exempt-namespace-prefix and --exempt-namespace-suffix.
type Exempt []string

// Has reports whether namespace is exempt, and by which entry.
func (e Exempt) Has(namespace string) (bool, string) {
	if namespace == ExemptNamespace {
		return true, ExemptNamespace
	}
	for _, glob := range e {
		if wildcardMatches(glob, namespace) {
			return true, glob
		}
	}
	return false, ""
}

// Exclusions are the namespace exclusions of Gatekeeper's Config
// (gatekeeper-system/config, spec.match): each entry keeps its processes
// away from the objects it matches. An entry matches when every criterion it
// sets matches (excludedNamespaces globs such as "kube-*" or "*-system",
// apiGroups, apiVersions, kinds, and a namespaceSelector on the namespace's
// labels); an entry that sets none matches nothing. The zero value and nil
// exclude nothing.
type Exclusions struct {
	entries map[Process][]exclusionEntry
	// Source names the Config they came from, for messages.
	source string
}

type exclusionEntry struct {
	index      int
	namespaces []string
	groups     map[string]bool
	versions   map[string]bool
	kinds      map[string]bool
	selector   labels.Selector
	selectorS  string
}

// configMatchEntry is one entry of a Config's spec.match.
type configMatchEntry struct {
	ExcludedNamespaces []string              `json:"excludedNamespaces,omitempty"`
	Processes          []string              `json:"processes,omitempty"`
	APIGroups          []string              `json:"apiGroups,omitempty"`
	APIVersions        []string              `json:"apiVersions,omitempty"`
	Kinds              []string              `json:"kinds,omitempty"`
	NamespaceSelector  *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
}

// ParseExclusions reads config's spec.match. Entries or processes that
// cannot be used are reported, by field, and left out; the rest apply.
func ParseExclusions(config *unstructured.Unstructured) (*Exclusions, []error) {
	ex := &Exclusions{entries: map[Process][]exclusionEntry{}, source: "Config " + config.GetNamespace() + "/" + config.GetName()}
	raw, found, err := unstructured.NestedFieldNoCopy(config.Object, "spec", "match")
	if err != nil || !found || raw == nil {
		if err != nil {
			return ex, []error{fmt.Errorf("%s: spec.match: %w", ex.source, err)}
		}
		return ex, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return ex, []error{fmt.Errorf("%s: spec.match: must be a list, not %T", ex.source, raw)}
	}
	var errs []error
	for i, item := range list {
		field := fmt.Sprintf("spec.match[%d]", i)
		m, ok := item.(map[string]any)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %s: must be an object", ex.source, field))
			continue
		}
		var entry configMatchEntry
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(m, &entry, true); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", ex.source, field, err))
			continue
		}
		e := exclusionEntry{index: i, namespaces: entry.ExcludedNamespaces,
			groups: set(entry.APIGroups), versions: set(entry.APIVersions), kinds: set(entry.Kinds)}
		if entry.NamespaceSelector != nil {
			sel, err := metav1.LabelSelectorAsSelector(entry.NamespaceSelector)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %s.namespaceSelector: %w", ex.source, field, err))
				continue
			}
			e.selector, e.selectorS = sel, sel.String()
		}
		if len(e.namespaces) == 0 && e.groups == nil && e.versions == nil && e.kinds == nil && e.selector == nil {
			errs = append(errs, fmt.Errorf("%s: %s: no excludedNamespaces, namespaceSelector, apiGroups, apiVersions or kinds: it excludes nothing", ex.source, field))
			continue
		}
		if len(entry.Processes) == 0 {
			errs = append(errs, fmt.Errorf("%s: %s.processes: empty: the entry excludes from nothing (use \"*\" for every process)", ex.source, field))
		}
		for j, p := range entry.Processes {
			switch Process(p) {
			case ProcessAll:
				for _, each := range allProcesses {
					ex.entries[each] = append(ex.entries[each], e)
				}
			case ProcessAudit, ProcessWebhook, ProcessMutation, ProcessSync:
				ex.entries[Process(p)] = append(ex.entries[Process(p)], e)
			default:
				errs = append(errs, fmt.Errorf("%s: %s.processes[%d]: unknown process %q: supported: audit, webhook, mutation-webhook, sync, *", ex.source, field, j, p))
			}
		}
	}
	return ex, errs
}

func set(values []string) map[string]bool {
	if len(values) == 0 {
		return nil
	}
	s := make(map[string]bool, len(values))
	for _, v := range values {
		s[v] = true
	}
	return s
}

// Excluded tells whether process leaves out an object of kind gvk called
// name in namespace, and why. nsLabels are the labels of its Namespace (of
// the object itself when it is a Namespace), nil when unknown: an entry with
// a namespaceSelector then does not match, as in Gatekeeper. A Namespace is
// matched by its own name.
func (x *Exclusions) Excluded(process Process, gvk schema.GroupVersionKind, name, namespace string, nsLabels map[string]string) (bool, string) {
	if x == nil {
		return false, ""
	}
	if isNamespaceKind(gvk) {
		namespace = name
	}
	for i := range x.entries[process] {
		e := &x.entries[process][i]
		if why, ok := e.matches(gvk, namespace, nsLabels); ok {
			return true, fmt.Sprintf("excluded from process %s by %s spec.match[%d] (%s)", process, x.source, e.index, why)
		}
	}
	return false, ""
}

// ExcludedObject is Excluded for an existing object, whose Namespace
// object is ns (nil when unknown or cluster-scoped); a Namespace's labels
// are its own. Nothing is read when x is nil.
func (x *Exclusions) ExcludedObject(process Process, obj *unstructured.Unstructured, ns map[string]any) (bool, string) {
	if x == nil {
		return false, ""
	}
	gvk := obj.GroupVersionKind()
	if isNamespaceKind(gvk) {
		ns = obj.Object
	}
	return x.Excluded(process, gvk, obj.GetName(), obj.GetNamespace(), labelsOf(ns))
}

// matches is true when every criterion e sets matches; why lists them.
func (e *exclusionEntry) matches(gvk schema.GroupVersionKind, namespace string, nsLabels map[string]string) (string, bool) {
	var why []string
	if e.groups != nil {
		if !e.groups[gvk.Group] {
			return "", false
		}
		why = append(why, fmt.Sprintf("apiGroups has %q", gvk.Group))
	}
	if e.versions != nil {
		if !e.versions[gvk.Version] {
			return "", false
		}
		why = append(why, fmt.Sprintf("apiVersions has %q", gvk.Version))
	}
	if e.kinds != nil {
		if !e.kinds[gvk.Kind] {
			return "", false
		}
		why = append(why, fmt.Sprintf("kinds has %q", gvk.Kind))
	}
	if len(e.namespaces) > 0 {
		glob := ""
		for _, n := range e.namespaces {
			if namespace != "" && wildcardMatches(n, namespace) {
				glob = n
				break
			}
		}
		if glob == "" {
			return "", false
		}
		why = append(why, fmt.Sprintf("excludedNamespaces: %q matches %q", namespace, glob))
	}
	if e.selector != nil {
		if nsLabels == nil || !e.selector.Matches(labels.Set(nsLabels)) {
			return "", false
		}
		why = append(why, fmt.Sprintf("namespaceSelector %q matches namespace %q", e.selectorS, namespace))
	}
	return strings.Join(why, ", "), true
}

// Equal tells whether x and y exclude the same for process, so a change
// of the Config that does not touch it can be told apart.
func (x *Exclusions) Equal(y *Exclusions, process Process) bool {
	var a, b []exclusionEntry
	if x != nil {
		a = x.entries[process]
	}
	if y != nil {
		b = y.entries[process]
	}
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if fmt.Sprint(a[i].namespaces, a[i].groups, a[i].versions, a[i].kinds, a[i].selectorS) !=
			fmt.Sprint(b[i].namespaces, b[i].groups, b[i].versions, b[i].kinds, b[i].selectorS) {
			return false
		}
	}
	return true
}

// WebhookSkips tells whether Gatekeeper's validating (ProcessWebhook) or
// mutating (ProcessMutation) webhook would not see a request, and why:
// its webhook configuration's namespaceSelector leaves out ExemptNamespace
// and namespaces labelled IgnoreLabel (for a Namespace, its own name and
// labels), and the webhook itself answers "allowed" for namespaces the
// Config excludes from that process. ns is the request's Namespace object
// (the object itself for a Namespace), nil when unknown or cluster-scoped.
func (x *Exclusions) WebhookSkips(process Process, exempt Exempt, gvk schema.GroupVersionKind, name, namespace string, ns map[string]any) (bool, string) {
	nsName := namespace
	if isNamespaceKind(gvk) {
		nsName = name
	}
	nsLabels := labelsOf(ns)
	if nsName != "" {
		if ok, by := exempt.Has(nsName); ok && by == ExemptNamespace {
			return true, fmt.Sprintf("namespace %q is exempt: Gatekeeper's webhook configurations leave out the namespace Gatekeeper runs in", nsName)
		} else if ok {
			return true, fmt.Sprintf("namespace %q is exempt (--exempt-namespace %s): Gatekeeper's webhook configurations leave it out", nsName, by)
		}
		if _, ok := nsLabels[IgnoreLabel]; ok {
			return true, fmt.Sprintf("namespace %q has the label %s: Gatekeeper's webhook configurations leave it out", nsName, IgnoreLabel)
		}
	}
	return x.Excluded(process, gvk, name, namespace, nsLabels)
}

// labelsOf is the metadata.labels of obj, nil for a nil obj.
func labelsOf(obj map[string]any) map[string]string {
	if obj == nil {
		return nil
	}
	return (&unstructured.Unstructured{Object: obj}).GetLabels()
}

// IgnoreLabelRefusal is what Gatekeeper's check-ignore-label webhook says
// to a Namespace created or updated with IgnoreLabel outside the exempt
// namespaces, or "" when it allows it.
func IgnoreLabelRefusal(exempt Exempt, gvk schema.GroupVersionKind, obj map[string]any) string {
	if !isNamespaceKind(gvk) || obj == nil {
		return ""
	}
	if ok, _ := exempt.Has((&unstructured.Unstructured{Object: obj}).GetName()); ok {
		return ""
	}
	if _, ok := labelsOf(obj)[IgnoreLabel]; !ok {
		return ""
	}
	return fmt.Sprintf("Only exempt namespace can have the %s label", IgnoreLabel)
}

// IgnoreLabelWebhook is the name of Gatekeeper's webhook that refuses
// IgnoreLabel, as its denials are worded.
const IgnoreLabelWebhook = "check-ignore-label.gatekeeper.sh"
