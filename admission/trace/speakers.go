package trace

import (
	"regexp"
	"strings"
)

// The API server's words for who refused or warned, as upstream writes
// them (the validating policy dispatcher, webhook status errors,
// PodSecurity) and as Gatehouse's constraint plugin writes them
// (Gatekeeper's webhook's words). Kinds of the policies they name.
const (
	KindValidatingPolicy = "ValidatingAdmissionPolicy"
	KindMutatingPolicy   = "MutatingAdmissionPolicy"
	KindConstraint       = "Constraint"
	KindWebhook          = "Webhook"
	// KindAdmission is an upstream plugin that names no policy.
	KindAdmission = "Admission"
	// KindWarning is a warning that names no one.
	KindWarning = "Warning"
)

var (
	policyDenial  = regexp.MustCompile(`(?s)ValidatingAdmissionPolicy '([^']*)'(?: with binding '([^']*)')? denied request: (.*)`)
	policyWarning = regexp.MustCompile(`(?s)^Validation failed for ValidatingAdmissionPolicy '([^']*)'(?: with binding '([^']*)')?: (.*)`)
	webhookDenial = regexp.MustCompile(`(?s)admission webhook "([^"]*)" denied the request(?::\s*(.*)|( without explanation))`)
	webhookFailed = regexp.MustCompile(`(?s)failed calling webhook "([^"]*)": (.*)`)
	constraintMsg = regexp.MustCompile(`^\[([^\]]+)\] (.*)`)
	podSecurity   = regexp.MustCompile(`(?s)(?:would )?violates? PodSecurity "([^"]*)": (.*)`)
)

// gatekeeperWebhook is the webhook name Gatekeeper denies as, which
// Gatehouse's constraint plugin keeps.
const gatekeeperWebhook = "validation.gatekeeper.sh"

// Denials says who refused a request, from the refusal's message.
// Upstream's message names only the first denying policy of a plugin.
func Denials(msg string) []Policy {
	if m := policyDenial.FindStringSubmatch(msg); m != nil {
		return []Policy{{Kind: KindValidatingPolicy, Name: m[1], Binding: m[2], Verdict: VerdictDeny, Message: m[3]}}
	}
	if m := webhookDenial.FindStringSubmatch(msg); m != nil {
		if m[1] == gatekeeperWebhook {
			var out []Policy
			for line := range strings.SplitSeq(m[2], "\n") {
				if c := constraintMsg.FindStringSubmatch(line); c != nil {
					out = append(out, Policy{Kind: KindConstraint, Name: c[1], Verdict: VerdictDeny, Message: c[2]})
				}
			}
			if len(out) > 0 {
				return out
			}
		}
		text := m[2]
		if m[3] != "" {
			text = "(without explanation)"
		}
		return []Policy{{Kind: KindWebhook, Name: m[1], Verdict: VerdictDeny, Message: text}}
	}
	if m := webhookFailed.FindStringSubmatch(msg); m != nil {
		return []Policy{{Kind: KindWebhook, Name: m[1], Verdict: VerdictError, Message: m[2]}}
	}
	if m := podSecurity.FindStringSubmatch(msg); m != nil {
		return []Policy{{Kind: KindAdmission, Name: "PodSecurity " + m[1], Verdict: VerdictDeny, Message: m[2]}}
	}
	// Another upstream plugin (ResourceQuota, LimitRanger, ...): its
	// message after the "is forbidden: " that admission.NewForbidden adds.
	text := msg
	if _, after, ok := strings.Cut(msg, " is forbidden: "); ok {
		text = after
	}
	return []Policy{{Kind: KindAdmission, Verdict: VerdictDeny, Message: text}}
}

// Warnings says who warned, warning by warning.
func Warnings(warnings []string) []Policy {
	var out []Policy
	for _, w := range warnings {
		switch m := policyWarning.FindStringSubmatch(w); {
		case m != nil:
			out = append(out, Policy{Kind: KindValidatingPolicy, Name: m[1], Binding: m[2], Verdict: VerdictWarn, Message: m[3]})
		case constraintMsg.MatchString(w):
			c := constraintMsg.FindStringSubmatch(w)
			out = append(out, Policy{Kind: KindConstraint, Name: c[1], Verdict: VerdictWarn, Message: c[2]})
		case podSecurity.MatchString(w):
			p := podSecurity.FindStringSubmatch(w)
			out = append(out, Policy{Kind: KindAdmission, Name: "PodSecurity " + p[1], Verdict: VerdictWarn, Message: p[2]})
		default:
			out = append(out, Policy{Kind: KindWarning, Verdict: VerdictWarn, Message: w})
		}
	}
	return out
}
