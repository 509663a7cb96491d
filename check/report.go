package check

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/gatehouse-dev/gatehouse/admission/trace"
	"github.com/gatehouse-dev/gatehouse/internal/junit"
)

// Formats are the output formats Write knows.
var Formats = []string{"table", "json", "yaml", "junit"}

// Summary counts results by verdict.
type Summary struct {
	Total   int `json:"total"`
	Allowed int `json:"allowed"`
	Warned  int `json:"warned"`
	Denied  int `json:"denied"`
	Invalid int `json:"invalid"`
	Errors  int `json:"errors"`
}

// Summarize counts results.
func Summarize(results []Result) Summary {
	s := Summary{Total: len(results)}
	for _, r := range results {
		switch r.Verdict {
		case Allowed:
			s.Allowed++
		case Warned:
			s.Warned++
		case Denied:
			s.Denied++
		case Invalid:
			s.Invalid++
		default:
			s.Errors++
		}
	}
	return s
}

// Passed reports whether everything was admitted.
func (s Summary) Passed() bool { return s.Denied+s.Invalid+s.Errors == 0 }

func (s Summary) String() string {
	parts := []string{fmt.Sprintf("%d allowed", s.Allowed)}
	for _, p := range []struct {
		n    int
		word string
	}{{s.Warned, "warned"}, {s.Denied, "denied"}, {s.Invalid, "invalid"}, {s.Errors, "not checked"}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.word))
		}
	}
	noun := "objects"
	if s.Total == 1 {
		noun = "object"
	}
	return fmt.Sprintf("%d %s: %s", s.Total, noun, strings.Join(parts, ", "))
}

// report is the document of the json and yaml formats.
type report struct {
	Results []Result `json:"results"`
	Summary Summary  `json:"summary"`
}

// Write writes results in format (one of Formats).
func Write(w io.Writer, format string, results []Result) error {
	if results == nil {
		results = []Result{}
	}
	switch format {
	case "", "table":
		return writeTable(w, results)
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(report{Results: results, Summary: Summarize(results)})
	case "yaml":
		out, err := yaml.Marshal(report{Results: results, Summary: Summarize(results)})
		if err != nil {
			return err
		}
		_, err = w.Write(out)
		return err
	case "junit":
		return writeJUnit(w, results)
	}
	return fmt.Errorf("unknown output format %q: want one of %s", format, strings.Join(Formats, ", "))
}

// writeTable writes a row per object and, under it, a line per finding.
func writeTable(w io.Writer, results []Result) error {
	header := []string{"RESULT", "OBJECT", "OPERATION", "SOURCE"}
	rows := [][]string{header}
	for _, r := range results {
		rows = append(rows, []string{string(r.Verdict), r.Object(), r.Operation, r.Source})
	}
	widths := make([]int, len(header))
	for _, row := range rows {
		for i, cell := range row {
			widths[i] = max(widths[i], len(cell))
		}
	}
	var b strings.Builder
	line := func(row []string) {
		for i, cell := range row {
			if i == len(row)-1 {
				b.WriteString(cell)
				break
			}
			fmt.Fprintf(&b, "%-*s   ", widths[i], cell)
		}
		b.WriteString("\n")
	}
	line(header)
	indent := strings.Repeat(" ", widths[0]+3)
	for i, r := range results {
		line(rows[i+1])
		for _, f := range r.Findings {
			fmt.Fprintf(&b, "%s%s  %s: %s\n", indent, f.Action, f.Speaker(), oneLine(f.Message))
		}
		// What the client never sees, from the trace: dryrun
		// violations and the mutators that patched.
		for _, e := range r.Explanation {
			for _, p := range e.Policies {
				if p.Verdict == trace.VerdictDryRun || p.Verdict == trace.VerdictPatch {
					fmt.Fprintf(&b, "%s%s  %s %s: %s\n", indent, p.Verdict, p.Kind, p.Name, oneLine(cmp.Or(p.Message, "changed the object")))
				}
			}
		}
		if len(r.Findings) == 0 && r.Message != "" && r.Verdict != Allowed && r.Verdict != Warned {
			fmt.Fprintf(&b, "%s%s\n", indent, oneLine(r.Message))
		}
		if r.Mutations != "" {
			for l := range strings.SplitSeq(strings.TrimRight(r.Mutations, "\n"), "\n") {
				fmt.Fprintf(&b, "%s%s\n", indent, l)
			}
		}
	}
	fmt.Fprintf(&b, "\n%s\n", Summarize(results))
	_, err := io.WriteString(w, b.String())
	return err
}

// Speaker names who spoke: e.g. "ValidatingAdmissionPolicy p (binding b)".
func (f Finding) Speaker() string {
	s := f.Kind
	if f.Name != "" {
		s += " " + f.Name
	}
	if f.Binding != "" {
		s += " (binding " + f.Binding + ")"
	}
	return s
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// writeJUnit writes one test case per object: a failure when it was
// denied or invalid, an error when it could not be checked; findings and
// mutations go to its system-out.
func writeJUnit(w io.Writer, results []Result) error {
	suite := junit.Suite{Name: "gatehouse check"}
	var total float64
	for _, r := range results {
		secs := r.Duration.Seconds()
		total += secs
		tc := junit.Case{Name: r.Operation + " " + r.Object(), Classname: r.Source, Time: fmt.Sprintf("%.3f", secs)}
		var details []string
		for _, f := range r.Findings {
			details = append(details, fmt.Sprintf("%s  %s: %s", f.Action, f.Speaker(), oneLine(f.Message)))
		}
		if r.Mutations != "" {
			details = append(details, r.Mutations)
		}
		text := strings.Join(details, "\n")
		switch r.Verdict {
		case Denied, Invalid:
			tc.Failure = &junit.Message{Message: oneLine(r.Message), Type: string(r.Verdict), Text: text}
		case Error:
			tc.Error = &junit.Message{Message: oneLine(r.Message), Type: string(r.Verdict), Text: text}
		default:
			if text != "" {
				tc.SystemOut = &junit.Text{Text: text}
			}
		}
		suite.Cases = append(suite.Cases, tc)
	}
	suite.Time = fmt.Sprintf("%.3f", total)
	return junit.Write(w, junit.Report{Suites: []junit.Suite{suite}})
}
