package check

import (
	"regexp"
	"strings"
)

// The API server's words for who refused or warned, as upstream writes
// them (validating policy dispatcher, webhook status errors) and as
// Gatehouse's constraint plugin writes them (Gatekeeper's webhook's words).
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

// denialFindings says who refused a request, from the refusal's message.
// Upstream's message names only the first denying policy; the admission
// trace has them all.
func denialFindings(msg string) []Finding {
	if m := policyDenial.FindStringSubmatch(msg); m != nil {
		return []Finding{{Kind: "ValidatingAdmissionPolicy", Name: m[1], Binding: m[2], Action: "deny", Message: m[3]}}
	}
	if m := webhookDenial.FindStringSubmatch(msg); m != nil {
		if m[1] == gatekeeperWebhook {
			var out []Finding
			for line := range strings.SplitSeq(m[2], "\n") {
				if c := constraintMsg.FindStringSubmatch(line); c != nil {
					out = append(out, Finding{Kind: "Constraint", Name: c[1], Action: "deny", Message: c[2]})
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
		return []Finding{{Kind: "Webhook", Name: m[1], Action: "deny", Message: text}}
	}
	if m := webhookFailed.FindStringSubmatch(msg); m != nil {
		return []Finding{{Kind: "Webhook", Name: m[1], Action: "error", Message: m[2]}}
	}
	if m := podSecurity.FindStringSubmatch(msg); m != nil {
		return []Finding{{Kind: "Admission", Name: "PodSecurity " + m[1], Action: "deny", Message: m[2]}}
	}
	// Another upstream plugin (ResourceQuota, LimitRanger, ...): its
	// message after the "is forbidden: " that admission.NewForbidden adds.
	text := msg
	if _, after, ok := strings.Cut(msg, " is forbidden: "); ok {
		text = after
	}
	return []Finding{{Kind: "Admission", Action: "deny", Message: text}}
}

// warningFindings says who warned.
func warningFindings(warnings []string) []Finding {
	var out []Finding
	for _, w := range warnings {
		switch m := policyWarning.FindStringSubmatch(w); {
		case m != nil:
			out = append(out, Finding{Kind: "ValidatingAdmissionPolicy", Name: m[1], Binding: m[2], Action: "warn", Message: m[3]})
		case constraintMsg.MatchString(w):
			c := constraintMsg.FindStringSubmatch(w)
			out = append(out, Finding{Kind: "Constraint", Name: c[1], Action: "warn", Message: c[2]})
		case podSecurity.MatchString(w):
			p := podSecurity.FindStringSubmatch(w)
			out = append(out, Finding{Kind: "Admission", Name: "PodSecurity " + p[1], Action: "warn", Message: p[2]})
		default:
			out = append(out, Finding{Kind: "Warning", Action: "warn", Message: w})
		}
	}
	return out
}
