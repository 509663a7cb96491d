package trace

import (
	"cmp"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"k8s.io/apiserver/pkg/admission"
	policyvalidating "k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	webhookmutating "k8s.io/apiserver/pkg/admission/plugin/webhook/mutating"
	webhookvalidating "k8s.io/apiserver/pkg/admission/plugin/webhook/validating"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
)

// Upstream's dispatchers say per webhook and per policy binding what they
// did only in audit annotations (whether each mutating webhook changed the
// object and its patch, which webhooks failed open, which validations of
// Audit bindings failed and at which expression). The decorator hands the
// plugin attributes that keep a copy of every annotation on its way to the
// request's own, and reads them back into the step: the cleanest hook
// upstream offers, since the dispatchers report nothing else outward.
type annotatedAttributes struct {
	admission.Attributes
	mu          sync.Mutex
	annotations map[string]string
}

func (a *annotatedAttributes) AddAnnotation(key, value string) error {
	return a.AddAnnotationWithLevel(key, value, auditinternal.LevelMetadata)
}

func (a *annotatedAttributes) AddAnnotationWithLevel(key, value string, level auditinternal.Level) error {
	if err := a.Attributes.AddAnnotationWithLevel(key, value, level); err != nil {
		return err
	}
	a.mu.Lock()
	if a.annotations == nil {
		a.annotations = map[string]string{}
	}
	a.annotations[key] = value
	a.mu.Unlock()
	return nil
}

func (a *annotatedAttributes) taken() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.annotations)
}

const validationFailureKey = "validation.policy.admission.k8s.io/validation_failure"

// policiesFromAnnotations reads upstream's bookkeeping annotations into
// policies, in the dispatchers' order (round, then index), and returns the
// annotations it did not read (auditAnnotations of policies and webhooks).
func policiesFromAnnotations(annotations map[string]string) (policies []Policy, rest map[string]string) {
	keys := slices.SortedFunc(maps.Keys(annotations), naturalCompare)
	patches := map[string]json.RawMessage{} // by round_r_index_i
	for _, k := range keys {
		if suffix, ok := strings.CutPrefix(k, webhookmutating.PatchAuditAnnotationPrefix); ok {
			var v struct {
				Patch json.RawMessage `json:"patch"`
			}
			if json.Unmarshal([]byte(annotations[k]), &v) == nil {
				patches[suffix] = v.Patch
			}
		}
	}
	for _, k := range keys {
		v := annotations[k]
		switch {
		case strings.HasPrefix(k, webhookmutating.PatchAuditAnnotationPrefix):
			// Read with its mutation annotation.
		case strings.HasPrefix(k, webhookmutating.MutationAuditAnnotationPrefix):
			var m webhookmutating.MutationAuditAnnotation
			if json.Unmarshal([]byte(v), &m) != nil {
				rest = setKey(rest, k, v)
				continue
			}
			p := Policy{Kind: KindWebhook, Name: m.Webhook, Configuration: m.Configuration, Verdict: VerdictAllow, Reason: "called; no change"}
			if m.Mutated {
				p.Verdict, p.Reason = VerdictPatch, "called; changed the object"
				p.Patch = patches[strings.TrimPrefix(k, webhookmutating.MutationAuditAnnotationPrefix)]
			}
			policies = append(policies, p)
		case strings.HasPrefix(k, webhookmutating.MutationAuditAnnotationFailedOpenKeyPrefix),
			strings.HasPrefix(k, webhookvalidating.ValidatingAuditAnnotationFailedOpenKeyPrefix):
			policies = append(policies, Policy{Kind: KindWebhook, Name: v, Verdict: VerdictFailedOpen,
				Reason: "the call failed; failurePolicy Ignore let the request through"})
		case k == validationFailureKey:
			var failures []policyvalidating.ValidationFailureValue
			if json.Unmarshal([]byte(v), &failures) != nil {
				rest = setKey(rest, k, v)
				continue
			}
			for _, f := range failures {
				policies = append(policies, Policy{Kind: KindValidatingPolicy, Name: f.Policy, Binding: f.Binding,
					Verdict: VerdictAudit, Message: f.Message, ExpressionIndex: &f.ExpressionIndex})
			}
		default:
			rest = setKey(rest, k, v)
		}
	}
	return policies, rest
}

func setKey(m map[string]string, k, v string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	m[k] = v
	return m
}

// naturalCompare orders keys with their numbers read as numbers, so that
// round_0_index_10 comes after round_0_index_9.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		na, ra := leadingNumber(a)
		nb, rb := leadingNumber(b)
		if na >= 0 && nb >= 0 {
			if na != nb {
				return cmp.Compare(na, nb)
			}
			a, b = ra, rb
			continue
		}
		if a[0] != b[0] {
			return cmp.Compare(a[0], b[0])
		}
		a, b = a[1:], b[1:]
	}
	return cmp.Compare(len(a), len(b))
}

// leadingNumber is the number s starts with (-1 if none) and the rest.
func leadingNumber(s string) (int, string) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' && i < 9 {
		i++
	}
	if i == 0 {
		return -1, s
	}
	n, _ := strconv.Atoi(s[:i])
	return n, s[i:]
}
