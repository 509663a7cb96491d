package trace

import (
	"context"
	"slices"
	"sync"
	"time"

	"k8s.io/apiserver/pkg/warning"
)

// The ring keeps 10,000 traces of ~25 steps each, and most steps only
// allowed: a whole Step per step (~170 bytes, a dozen pointers) made the
// ring the largest pointer-dense structure of the API server's heap. A
// step that says nothing but its verdict is kept as a packedStep, 16 bytes
// without pointers (the garbage collector does not scan such slices); the
// steps that say more keep their whole Step beside it. Copy turns them
// back into Steps for readers.
type packedStep struct {
	duration time.Duration
	// rich is the index of the step's whole record in Trace.rich, or -1.
	rich    int32
	plugin  uint16 // index in pluginNames
	phase   uint8
	verdict uint8
}

const (
	phaseMutating uint8 = iota
	phaseValidating
	phaseOther            // then the step is rich
	reinvocationBit uint8 = 0x80
)

const (
	codeAllow uint8 = iota
	codeWarn
	codeDeny
	codeError
	codeOther // then the step is rich
)

func verdictCode(v string) uint8 {
	switch v {
	case VerdictAllow:
		return codeAllow
	case VerdictWarn:
		return codeWarn
	case VerdictDeny:
		return codeDeny
	case VerdictError:
		return codeError
	}
	return codeOther
}

var verdictNames = [...]string{codeAllow: VerdictAllow, codeWarn: VerdictWarn, codeDeny: VerdictDeny, codeError: VerdictError}

// pluginNames interns plugin names: the chain's plugins, a few dozen, each
// given its index when decorated.
var pluginNames = struct {
	sync.RWMutex
	index map[string]uint16
	list  []string
}{index: map[string]uint16{}}

func pluginIndex(name string) uint16 {
	pluginNames.RLock()
	i, ok := pluginNames.index[name]
	pluginNames.RUnlock()
	if ok {
		return i
	}
	pluginNames.Lock()
	defer pluginNames.Unlock()
	if i, ok := pluginNames.index[name]; ok {
		return i
	}
	i = uint16(len(pluginNames.list))
	pluginNames.index[name] = i
	pluginNames.list = append(pluginNames.list, name)
	return i
}

func pluginName(i uint16) string {
	pluginNames.RLock()
	defer pluginNames.RUnlock()
	return pluginNames.list[i]
}

// says reports whether a step says more than its plugin, phase, verdict
// and duration.
func (s *Step) says() bool {
	return s.Message != "" || len(s.Warnings) > 0 || s.Patch != nil || len(s.Annotations) > 0 || len(s.Policies) > 0
}

// pack appends s to the trace's steps; t.mu is held.
func (t *Trace) pack(s Step, plugin uint16) {
	p := packedStep{duration: s.Duration, rich: -1, plugin: plugin, phase: phaseOther, verdict: codeOther}
	switch s.Phase {
	case "mutating":
		p.phase = phaseMutating
	case "validating":
		p.phase = phaseValidating
	}
	if s.Reinvocation {
		p.phase |= reinvocationBit
	}
	p.verdict = verdictCode(s.Verdict)
	if s.says() || p.phase&^reinvocationBit == phaseOther || p.verdict == codeOther {
		if len(s.Policies) > 0 {
			s.packedPolicies, s.Policies = packPolicies(s.Policies)
		}
		p.rich = int32(len(t.rich))
		t.rich = append(t.rich, s)
	}
	if t.packed == nil {
		// About as many steps as the chain has plugins that handle a
		// write: grown once at most.
		t.packed = make([]packedStep, 0, 32)
	}
	t.packed = append(t.packed, p)
}

// packSteps moves Steps set directly (traces made whole rather than
// recorded, in tests and tools) into the packed form; t.mu is held.
func (t *Trace) packSteps() {
	if t.packed != nil || t.Steps == nil {
		return
	}
	for _, s := range t.Steps {
		t.pack(s, pluginIndex(s.Plugin))
	}
	t.Steps = nil
}

// steps returns the trace's steps, sharing the rich ones' slices and maps
// with t; t.mu is held.
func (t *Trace) steps() []Step {
	if t.packed == nil {
		return t.Steps
	}
	out := make([]Step, len(t.packed))
	for i, p := range t.packed {
		if p.rich >= 0 {
			out[i] = t.rich[p.rich].unpackPolicies()
			continue
		}
		s := Step{Plugin: pluginName(p.plugin), Phase: "mutating", Reinvocation: p.phase&reinvocationBit != 0, Verdict: verdictNames[p.verdict], Duration: p.duration}
		if p.phase&^reinvocationBit == phaseValidating {
			s.Phase = "validating"
		}
		out[i] = s
	}
	return out
}

// hasVerdict reports whether a step of t has verdict v; t.mu is held.
func (t *Trace) hasVerdict(v string) bool {
	if t.packed == nil {
		return slices.ContainsFunc(t.Steps, func(s Step) bool { return s.Verdict == v })
	}
	code := verdictCode(v)
	for _, p := range t.packed {
		if code != codeOther && p.verdict == code || p.rich >= 0 && t.rich[p.rich].Verdict == v {
			return true
		}
	}
	return false
}

// richSteps are the steps kept whole (those that may carry policies).
func (t *Trace) richSteps() []Step {
	if t.packed == nil {
		return t.Steps
	}
	return t.rich
}

// A constraint plugin reports every constraint of every request, most of
// them skipped or allowed: such a policy (kind, name, verdict, a reason,
// nothing else) is kept as a packedPolicy, a third of a Policy; a policy
// that says more is kept whole in the step's Policies, at index full.
type packedPolicy struct {
	kind, name, reason string
	full               int32 // index in Step.Policies, or -1
	verdict            uint8
}

// packable reports whether p says no more than a packedPolicy keeps
// (TestPackablePolicy fails when Policy gains a field not checked here).
func (p *Policy) packable() bool {
	_, known := policyVerdicts[p.Verdict]
	return known && p.Binding == "" && p.Configuration == "" && p.Message == "" && p.Expression == "" &&
		p.ExpressionIndex == nil && p.Patch == nil && p.Exchange == 0 && p.Fault == "" && p.CallDuration == 0 && !p.Stubbed
}

// policyVerdicts are the verdicts a packedPolicy keeps, by code.
var policyVerdicts = map[string]uint8{VerdictSkip: 0, VerdictAllow: 1, VerdictWarn: 2, VerdictDeny: 3, VerdictDryRun: 4, VerdictPatch: 5, VerdictAudit: 6, VerdictFailedOpen: 7, VerdictError: 8}
var policyVerdictNames = [...]string{VerdictSkip, VerdictAllow, VerdictWarn, VerdictDeny, VerdictDryRun, VerdictPatch, VerdictAudit, VerdictFailedOpen, VerdictError}

// packPolicies copies policies into their kept form: all of them packed,
// and those that say more also whole.
func packPolicies(policies []Policy) ([]packedPolicy, []Policy) {
	packed := make([]packedPolicy, len(policies))
	var whole []Policy
	for i := range policies {
		p := &policies[i]
		if p.packable() {
			packed[i] = packedPolicy{kind: p.Kind, name: p.Name, reason: p.Reason, full: -1, verdict: policyVerdicts[p.Verdict]}
			continue
		}
		packed[i] = packedPolicy{full: int32(len(whole))}
		whole = append(whole, *p)
	}
	return packed, whole
}

// policy returns the i-th policy of s, packed or not.
func (s *Step) policy(i int) Policy {
	if s.packedPolicies == nil {
		return s.Policies[i]
	}
	pp := s.packedPolicies[i]
	if pp.full >= 0 {
		return s.Policies[pp.full]
	}
	return Policy{Kind: pp.kind, Name: pp.name, Verdict: policyVerdictNames[pp.verdict], Reason: pp.reason}
}

// policyCount is how many policies s has, packed or not.
func (s *Step) policyCount() int {
	if s.packedPolicies != nil {
		return len(s.packedPolicies)
	}
	return len(s.Policies)
}

// unpackPolicies returns s with its Policies whole again.
func (s Step) unpackPolicies() Step {
	if s.packedPolicies == nil {
		return s
	}
	policies := make([]Policy, len(s.packedPolicies))
	for i := range policies {
		policies[i] = s.policy(i)
	}
	s.Policies, s.packedPolicies = policies, nil
	return s
}

// callScratch is what one trace's plugin calls report into: the warnings
// and the policies of the call under way. Plugins are called one after
// another, so one per trace serves every call, and they come from a pool,
// so their slices do not grow anew on every request. The context handed
// to the plugins is derived once per parent context.
type callScratch struct {
	owner    *Trace
	parent   context.Context
	ctx      context.Context
	warnings stepWarnings
	policies policyCollector
}

var scratchPool = sync.Pool{New: func() any {
	s := &callScratch{}
	s.policies.scratch = s
	return s
}}

// scratch returns t's call scratch with the context for a call made with
// ctx; t.mu is not held (plugins run one at a time).
func (t *Trace) scratch(ctx context.Context) (*callScratch, context.Context) {
	t.mu.Lock()
	sc := t.calls
	if sc == nil {
		sc = scratchPool.Get().(*callScratch)
		sc.policies.mu.Lock()
		sc.owner = t
		sc.policies.mu.Unlock()
		t.calls = sc
	}
	t.mu.Unlock()
	if sc.parent != ctx {
		sc.parent = ctx
		sc.warnings.ctx = ctx
		sc.ctx = context.WithValue(warning.WithWarningRecorder(ctx, &sc.warnings), policiesKey{}, &sc.policies)
	}
	return sc, sc.ctx
}

// releaseScratch gives t's scratch back once t is closed.
func (t *Trace) releaseScratch() {
	t.mu.Lock()
	sc := t.calls
	t.calls = nil
	t.mu.Unlock()
	if sc == nil {
		return
	}
	sc.policies.mu.Lock()
	clear(sc.policies.items)
	sc.owner, sc.policies.items, sc.policies.calls = nil, sc.policies.items[:0], sc.policies.calls[:0]
	sc.policies.mu.Unlock()
	sc.warnings.mu.Lock()
	clear(sc.warnings.items)
	sc.warnings.items = sc.warnings.items[:0]
	sc.warnings.mu.Unlock()
	sc.parent, sc.ctx, sc.warnings.ctx = nil, nil, nil
	scratchPool.Put(sc)
}
