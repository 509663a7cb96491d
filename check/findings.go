package check

import "github.com/gatehouse-dev/gatehouse/admission/trace"

// denialFindings says who refused a request, from the refusal's message
// (trace.Denials): upstream's message names only the first denying policy;
// the admission trace has every step.
func denialFindings(msg string) []Finding {
	return findings(trace.Denials(msg))
}

// warningFindings says who warned.
func warningFindings(warnings []string) []Finding {
	return findings(trace.Warnings(warnings))
}

func findings(policies []trace.Policy) []Finding {
	out := make([]Finding, len(policies))
	for i, p := range policies {
		out[i] = Finding{Kind: p.Kind, Name: p.Name, Binding: p.Binding, Action: p.Verdict, Message: p.Message}
	}
	return out
}
