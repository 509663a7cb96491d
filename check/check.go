package check

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/gatehouse-dev/gatehouse/admission/trace"
)

// Verdict is what admission made of one object.
type Verdict string

const (
	Allowed Verdict = "ALLOWED"
	Warned  Verdict = "WARNED" // allowed, with warnings
	Denied  Verdict = "DENIED"
	// Invalid: refused by the API's own validation (the object's schema),
	// not by a policy.
	Invalid Verdict = "INVALID"
	// Error: the object could not be checked (unknown kind, a namespace
	// that could not be made, the API server failing).
	Error Verdict = "ERROR"
)

// Finding is one policy, binding, constraint or webhook that spoke.
type Finding struct {
	// Kind is what spoke: ValidatingAdmissionPolicy, Constraint,
	// ValidatingWebhook, MutatingWebhook, or Admission for an upstream
	// plugin that names no policy.
	Kind string `json:"kind"`
	// Name of the policy, constraint or webhook; Binding for a
	// ValidatingAdmissionPolicy.
	Name    string `json:"name,omitempty"`
	Binding string `json:"binding,omitempty"`
	// Action: deny or warn.
	Action  string `json:"action"`
	Message string `json:"message"`
}

// Result is the check of one object.
type Result struct {
	Source    string    `json:"source"`
	Kind      string    `json:"kind"`
	Namespace string    `json:"namespace,omitempty"`
	Name      string    `json:"name"`
	Operation string    `json:"operation"`
	Verdict   Verdict   `json:"verdict"`
	Findings  []Finding `json:"findings,omitempty"`
	// Message is the API server's whole answer when it refused the object.
	Message string `json:"message,omitempty"`
	// Mutations is a unified diff of what the mutating chain changed,
	// when asked for (Options.ShowMutations).
	Mutations string        `json:"mutations,omitempty"`
	Duration  time.Duration `json:"-"`
	// Explanation is what the admission trace recorded: the steps, and
	// the policies inside them, that did more than allow.
	Explanation []ExplainedStep `json:"explanation,omitempty"`
	// Produced is what admission produced (nil when refused or deleted);
	// Warnings are the warnings as the API server sent them.
	Produced *unstructured.Unstructured `json:"-"`
	Warnings []string                   `json:"-"`
}

// ExplainedStep is one admission step that spoke, from the trace.
type ExplainedStep struct {
	Plugin   string         `json:"plugin"`
	Phase    string         `json:"phase"`
	Verdict  string         `json:"verdict"`
	Message  string         `json:"message,omitempty"`
	Policies []trace.Policy `json:"policies,omitempty"`
}

// explain keeps the steps and policies of t that did more than allow (or
// skip).
func explain(t *trace.Trace) []ExplainedStep {
	var out []ExplainedStep
	for _, s := range t.Steps {
		e := ExplainedStep{Plugin: s.Plugin, Phase: s.Phase, Verdict: s.Verdict, Message: s.Message}
		if e.Message == "" && len(s.Warnings) > 0 {
			e.Message = strings.Join(s.Warnings, "; ")
		}
		for _, p := range s.Policies {
			if p.Verdict != trace.VerdictAllow && p.Verdict != trace.VerdictSkip {
				e.Policies = append(e.Policies, p)
			}
		}
		if s.Verdict != trace.VerdictAllow || len(e.Policies) > 0 {
			out = append(out, e)
		}
	}
	return out
}

// Object names the result's object as kubectl does: Kind namespace/name.
func (r Result) Object() string {
	if r.Namespace == "" {
		return r.Kind + " " + r.Name
	}
	return r.Kind + " " + r.Namespace + "/" + r.Name
}

// Options are the checker's settings.
type Options struct {
	// NamespaceLabels are the labels of namespaces the objects name, so
	// that namespaceSelectors select as they would in the cluster.
	NamespaceLabels map[string]map[string]string
	// ShowMutations records the diff the mutating chain made.
	ShowMutations bool
	// Concurrency is how many objects are checked at once (default 16).
	Concurrency int
	// Explain, when set, finds the admission trace of a request by the
	// tag the checker sent it with (trace.TagHeader): each result then
	// says what every admission step did (Result.Explanation).
	Explain func(tag string) *trace.Trace
}

// Checker sends objects through an API server's admission chain with
// server-side dry-run.
type Checker struct {
	dyn    dynamic.Interface
	client kubernetes.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
	opts   Options
	// created are the namespaces Prepare made.
	created map[string]bool
	// baseline are the inputs as stored without the policies, by source
	// and object (see Baseline).
	baseline map[string]*unstructured.Unstructured
	// cfg is the checker's own identity; impersonating are clients that
	// send as other users, by user and groups.
	cfg           *rest.Config
	mu            sync.Mutex
	impersonating map[string]dynamic.Interface
	// tags number the requests for their traces.
	tags atomic.Int64
}

type tagKey struct{}

// tagTransport sends the tag of a request's context as trace.TagHeader.
type tagTransport struct{ next http.RoundTripper }

func (t tagTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if tag, ok := req.Context().Value(tagKey{}).(string); ok {
		req = req.Clone(req.Context())
		req.Header.Set(trace.TagHeader, tag)
	}
	return t.next.RoundTrip(req)
}

// NewChecker returns a checker for the API server of cfg; cfg must be
// allowed to create namespaces, service accounts and the objects.
func NewChecker(cfg *rest.Config, opts Options) (*Checker, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 16
	}
	cfg = rest.CopyConfig(cfg)
	cfg.WarningHandlerWithContext = warningCollector{}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return tagTransport{next: rt} })
	// Checks run one after another as fast as the server answers.
	cfg.QPS, cfg.Burst = -1, -1
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Checker{
		dyn:           dyn,
		client:        client,
		mapper:        restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)),
		opts:          opts,
		created:       map[string]bool{},
		baseline:      map[string]*unstructured.Unstructured{},
		cfg:           cfg,
		impersonating: map[string]dynamic.Interface{},
	}, nil
}

// mapping finds the resource of obj's kind, rediscovering once when the
// kind is new (policies may have added CRDs).
func (c *Checker) mapping(obj *unstructured.Unstructured) (*meta.RESTMapping, error) {
	gvk := obj.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		c.mapper.Reset()
		m, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if meta.IsNoMatchError(err) {
		return nil, fmt.Errorf("unknown kind %s (apiVersion %s): the API server serves no such resource: %w", gvk.Kind, gvk.GroupVersion(), err)
	}
	return m, err
}

// normalize gives namespaced objects kubectl's default namespace.
func (c *Checker) normalize(obj *unstructured.Unstructured) (*meta.RESTMapping, error) {
	m, err := c.mapping(obj)
	if err != nil {
		return nil, err
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		if obj.GetNamespace() == "" {
			obj.SetNamespace(metav1.NamespaceDefault)
		}
	} else {
		obj.SetNamespace("")
	}
	return m, nil
}

// Prepare makes what the checks rely on, before the policies are in
// place (so that policies do not judge the set-up): the namespaces that
// inputs and existing objects name, with their labels and default
// ServiceAccount, and the existing objects, which the inputs that match
// them then update. Namespace objects among the inputs are not made here;
// Run checks them first and makes them if other inputs need them.
func (c *Checker) Prepare(ctx context.Context, inputs, existing []Input) error {
	defined := map[string]bool{}
	for _, in := range inputs {
		if isNamespace(in.Object) {
			defined[in.Object.GetName()] = true
		}
	}
	needed := map[string]bool{}
	for ns := range c.opts.NamespaceLabels {
		needed[ns] = true
	}
	for _, set := range [][]Input{existing, inputs} {
		for _, in := range set {
			if isNamespace(in.Object) {
				continue
			}
			if _, err := c.normalize(in.Object); err != nil {
				// A kind the policies may define (a CRD): its
				// namespace, if it names one, is made all the same.
				if ns := in.Object.GetNamespace(); ns != "" {
					needed[ns] = true
				}
				continue
			}
			if ns := in.Object.GetNamespace(); ns != "" {
				needed[ns] = true
			}
		}
	}
	for _, e := range existing {
		if isNamespace(e.Object) {
			needed[e.Object.GetName()] = true
		}
	}
	for _, ns := range slices.Sorted(maps.Keys(needed)) {
		if defined[ns] {
			continue
		}
		if err := c.ensureNamespace(ctx, ns, c.opts.NamespaceLabels[ns]); err != nil {
			return err
		}
	}
	for _, e := range existing {
		if isNamespace(e.Object) {
			continue // made above, with --namespace-labels
		}
		m, err := c.normalize(e.Object)
		if err != nil {
			return fmt.Errorf("%s: %w", e.Source, err)
		}
		obj := e.Object.DeepCopy()
		if _, err := c.dyn.Resource(m.Resource).Namespace(obj.GetNamespace()).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("%s: creating existing %s %s: %w", e.Source, obj.GetKind(), obj.GetName(), err)
		}
	}
	byKey := map[string]*unstructured.Unstructured{}
	for _, e := range existing {
		byKey[objectKey(e.Object)] = e.Object
	}
	for i := range inputs {
		if old, ok := byKey[objectKey(inputs[i].Object)]; ok {
			inputs[i].Old = old
		}
	}
	return nil
}

// UnknownKinds lists, by source, the inputs whose kind the API server
// does not serve.
func (c *Checker) UnknownKinds(inputs []Input) []error {
	var errs []error
	for _, in := range inputs {
		if _, err := c.mapping(in.Object); err != nil && meta.IsNoMatchError(errors.Unwrap(err)) {
			errs = append(errs, fmt.Errorf("%s: %w", in.Source, err))
		}
	}
	return errs
}

func isNamespace(u *unstructured.Unstructured) bool {
	gvk := u.GroupVersionKind()
	return gvk.Group == "" && gvk.Kind == "Namespace"
}

// ensureNamespace makes namespace ns with labels, and its default
// ServiceAccount: there is no controller-manager to make it, and the
// ServiceAccount admission plugin refuses pods without it.
func (c *Checker) ensureNamespace(ctx context.Context, ns string, labels map[string]string) error {
	_, err := c.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	if apierrors.IsAlreadyExists(err) && len(labels) > 0 {
		existing, err := c.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("namespace %s: %w", ns, err)
		}
		if existing.Labels == nil {
			existing.Labels = map[string]string{}
		}
		maps.Copy(existing.Labels, labels)
		if _, err := c.client.CoreV1().Namespaces().Update(ctx, existing, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("labelling namespace %s: %w", ns, err)
		}
	}
	c.created[ns] = true
	return c.ensureServiceAccount(ctx, ns)
}

func (c *Checker) ensureServiceAccount(ctx context.Context, ns string) error {
	_, err := c.client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the default ServiceAccount of namespace %s: %w", ns, err)
	}
	return nil
}

// Run checks every input, Namespaces first, in input order otherwise.
// A Namespace that other inputs live in is then made for real (after its
// check), so that they can be checked in it.
func (c *Checker) Run(ctx context.Context, inputs []Input) []Result {
	needed := map[string]bool{}
	for _, in := range inputs {
		if !isNamespace(in.Object) {
			if ns := in.Object.GetNamespace(); ns != "" {
				needed[ns] = true
			}
		}
	}
	results := make([]Result, len(inputs))
	order := make([]int, len(inputs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		return isNamespace(inputs[order[a]].Object) && !isNamespace(inputs[order[b]].Object)
	})
	refused := map[string]string{}
	// Namespaces first, one by one: the objects in them need them made.
	var rest []int
	for _, i := range order {
		in := inputs[i]
		if !isNamespace(in.Object) {
			rest = append(rest, i)
			continue
		}
		results[i] = c.Check(ctx, in)
		if needed[in.Object.GetName()] && !c.created[in.Object.GetName()] {
			if results[i].Verdict == Denied || results[i].Verdict == Invalid || results[i].Verdict == Error {
				refused[in.Object.GetName()] = strings.ToLower(string(results[i].Verdict))
				continue
			}
			// Made for real as the input says, so namespaceSelectors
			// see its labels.
			if _, err := c.client.CoreV1().Namespaces().Create(ctx, namespaceFrom(in.Object), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				refused[in.Object.GetName()] = "not created: " + err.Error()
				continue
			}
			c.created[in.Object.GetName()] = true
			if err := c.ensureServiceAccount(ctx, in.Object.GetName()); err != nil {
				refused[in.Object.GetName()] = err.Error()
			}
		}
	}
	// The rest concurrently: each check is a round trip to the API
	// server, which answers several at once.
	work := make(chan int)
	var wg sync.WaitGroup
	for range max(1, c.opts.Concurrency) {
		wg.Go(func() {
			for i := range work {
				in := inputs[i]
				if ns := in.Object.GetNamespace(); ns != "" && refused[ns] != "" {
					results[i] = resultFor(in, "")
					results[i].Verdict = Error
					results[i].Message = fmt.Sprintf("namespace %s is not there: its Namespace object was %s", ns, refused[ns])
					continue
				}
				results[i] = c.Check(ctx, in)
			}
		})
	}
	for _, i := range rest {
		work <- i
	}
	close(work)
	wg.Wait()
	return results
}

func namespaceFrom(u *unstructured.Unstructured) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: u.GetName(), Labels: u.GetLabels(), Annotations: u.GetAnnotations()}}
}

// dryRun sends in with server-side dry-run: a create, or an update of
// in.Old; warnings collects the warnings of the request.
func (c *Checker) dryRun(ctx context.Context, in Input, warnings *warningList) (*unstructured.Unstructured, error) {
	m, err := c.normalize(in.Object)
	if err != nil {
		return nil, err
	}
	obj := in.Object.DeepCopy()
	ctx = context.WithValue(ctx, warningsKey{}, warnings)
	dyn, err := c.dynFor(in.User, in.Groups)
	if err != nil {
		return nil, err
	}
	resource := dyn.Resource(m.Resource).Namespace(obj.GetNamespace())
	var out *unstructured.Unstructured
	// A parameter resource or a policy's informer that has just started
	// may not have synced yet; upstream then fails the request with "not
	// yet synced". That is start-up, not the policy's verdict: retry.
	for attempt := 0; ; attempt++ {
		warnings.reset()
		if in.Delete {
			err = resource.Delete(ctx, obj.GetName(), metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		} else if in.Old != nil {
			live, gerr := resource.Get(ctx, obj.GetName(), metav1.GetOptions{})
			if gerr != nil {
				err = gerr
			} else {
				obj.SetResourceVersion(live.GetResourceVersion())
				out, err = resource.Update(ctx, obj, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
			}
		} else {
			out, err = resource.Create(ctx, obj, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		}
		if err == nil || attempt >= 20 || !strings.Contains(err.Error(), "not yet synced") {
			return out, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dynFor is the client that sends requests as user (the checker's own
// identity when user is ""), made once per user.
func (c *Checker) dynFor(user string, groups []string) (dynamic.Interface, error) {
	if user == "" {
		return c.dyn, nil
	}
	key := user + "\x00" + strings.Join(groups, "\x00")
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := c.impersonating[key]; ok {
		return d, nil
	}
	cfg := rest.CopyConfig(c.cfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	d, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	c.impersonating[key] = d
	return d, nil
}

func resultFor(in Input, op string) Result {
	if op == "" {
		op = "CREATE"
		switch {
		case in.Delete:
			op = "DELETE"
		case in.Old != nil:
			op = "UPDATE"
		}
	}
	return Result{Source: in.Source, Kind: in.Object.GetKind(), Namespace: in.Object.GetNamespace(), Name: nameOf(in.Object), Operation: op}
}

func nameOf(u *unstructured.Unstructured) string {
	if u.GetName() == "" && u.GetGenerateName() != "" {
		return u.GetGenerateName() + "*"
	}
	return u.GetName()
}

// Check sends one object with server-side dry-run: a create, or an update
// of in.Old.
func (c *Checker) Check(ctx context.Context, in Input) (res Result) {
	start := time.Now()
	res = resultFor(in, "")
	defer func() { res.Duration = time.Since(start) }()
	if _, err := c.normalize(in.Object); err != nil {
		res.Verdict, res.Message = Error, err.Error()
		return res
	}
	res.Namespace = in.Object.GetNamespace()
	warnings := &warningList{}
	tag := fmt.Sprintf("check-%d", c.tags.Add(1))
	out, err := c.dryRun(context.WithValue(ctx, tagKey{}, tag), in, warnings)
	if c.opts.Explain != nil {
		// The server records the trace as it finishes the request, a
		// moment after the answer has left.
		for range 100 {
			if t := c.opts.Explain(tag); t != nil {
				res.Explanation = explain(t)
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	res.Warnings = warnings.list()
	res.Findings = append(res.Findings, warningFindings(res.Warnings)...)
	res.Produced = out
	if err != nil {
		classify(&res, err)
		return res
	}
	res.Verdict = Allowed
	if len(warnings.list()) > 0 {
		res.Verdict = Warned
	}
	if c.opts.ShowMutations {
		if base := c.baseline[in.Source+"\x00"+objectKey(in.Object)]; base != nil {
			res.Mutations = mutationDiff(base, out)
		}
	}
	return res
}

// Baseline dry-runs every input once before the policies are applied and
// keeps what the API server would have stored, so that a later Check with
// ShowMutations shows what the policies changed (mutating admission
// policies, mutating webhooks, Gatekeeper mutators) apart from the
// defaults and upstream plugins that touch every object anyway.
func (c *Checker) Baseline(ctx context.Context, inputs []Input) {
	if !c.opts.ShowMutations {
		return
	}
	for _, in := range inputs {
		out, err := c.dryRun(ctx, in, &warningList{})
		if err == nil {
			c.baseline[in.Source+"\x00"+objectKey(in.Object)] = out
		}
	}
}

// classify reads a refusal: a policy's denial, the object's own
// validation, or something else.
func classify(res *Result, err error) {
	res.Message = err.Error()
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		res.Verdict = Error
		return
	}
	s := status.Status()
	switch s.Reason {
	case metav1.StatusReasonInvalid:
		// A ValidatingAdmissionPolicy may deny with reason Invalid.
		if f := denialFindings(s.Message); len(f) > 0 && f[0].Kind != "Admission" {
			res.Verdict = Denied
			res.Findings = append(f, res.Findings...)
			return
		}
		res.Verdict = Invalid
	case metav1.StatusReasonForbidden, metav1.StatusReasonInternalError, metav1.StatusReasonBadRequest, metav1.StatusReasonTimeout, metav1.StatusReasonRequestEntityTooLarge:
		if s.Reason != metav1.StatusReasonForbidden && !strings.Contains(s.Message, "admission webhook") && !strings.Contains(s.Message, "webhook") {
			res.Verdict = Error
			return
		}
		res.Verdict = Denied
		res.Findings = append(denialFindings(s.Message), res.Findings...)
	case metav1.StatusReasonAlreadyExists:
		res.Verdict = Error
		res.Message += " (the object exists already: give it with --existing to check an update)"
	default:
		// A webhook that answers allowed: false with an error status
		// (controller-runtime's admission.Errored, as Gatekeeper's
		// mutation webhook does when mutation fails) refuses the request
		// with that status's code and no reason.
		if strings.Contains(s.Message, "admission webhook \"") && strings.Contains(s.Message, "\" denied the request") {
			res.Verdict = Denied
			res.Findings = append(denialFindings(s.Message), res.Findings...)
			return
		}
		res.Verdict = Error
	}
}

type warningsKey struct{}

// warningList collects the warnings of one request.
type warningList struct {
	mu    sync.Mutex
	items []string
}

func (w *warningList) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.items = nil
}

func (w *warningList) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.items)
}

// warningCollector hands each warning to the list of the request whose
// context carries one.
type warningCollector struct{}

func (warningCollector) HandleWarningHeaderWithContext(ctx context.Context, code int, _ string, text string) {
	if code != 299 {
		return
	}
	if w, ok := ctx.Value(warningsKey{}).(*warningList); ok {
		w.mu.Lock()
		w.items = append(w.items, text)
		w.mu.Unlock()
	}
}

var _ rest.WarningHandlerWithContext = warningCollector{}
