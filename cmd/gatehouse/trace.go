package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/gatehouse-dev/gatehouse/admission/trace"
)

func newTraceCommand() *cobra.Command {
	var (
		cluster    clusterFlags
		follow     bool
		allSteps   bool
		format     string
		filter     trace.Filter
		limit      int
		outcomeArg string
		system     bool
	)
	cmd := &cobra.Command{
		Use:   "trace",
		Short: "Show how admission decided recent write requests, step by step",
		Long: `Print the admission traces a running Gatehouse recorded: for each write request
(create, update, patch, delete), who sent it and what, every admission plugin
that handled it in chain order with its verdict (allow, warn, deny, error),
message and time, and the outcome. Dry-run requests are traced and flagged.

By default each request is a line, with the steps that did more than allow
under it; --steps shows every step. -f keeps printing new requests as they
come. Filters: --namespace, --name, --user, --outcome (allowed, denied,
failed), --verdict (a request with a step of that verdict).

The traces are served by the API server at ` + trace.Path + ` (authenticated and
authorized as any request; system:masters may read them); the newest
--trace-buffer (10,000) are kept.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch format {
			case "table", "json":
			default:
				return usageErrorf("--output %q: must be table or json", format)
			}
			switch outcomeArg {
			case "", trace.OutcomeAllowed, trace.OutcomeDenied, trace.OutcomeFailed:
				filter.Outcome = outcomeArg
			default:
				return usageErrorf("--outcome %q: must be allowed, denied or failed", outcomeArg)
			}
			switch filter.Verdict {
			case "", trace.VerdictAllow, trace.VerdictWarn, trace.VerdictDeny, trace.VerdictError:
			default:
				return usageErrorf("--verdict %q: must be allow, warn, deny or error", filter.Verdict)
			}
			filter.NoSystem = !system && filter.User == ""
			cfg, err := cluster.restConfig(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			return showTraces(ctx, cmd.OutOrStdout(), cfg, filter, limit, follow, allSteps, format)
		},
	}
	cluster.add(cmd)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new requests")
	cmd.Flags().BoolVar(&allSteps, "steps", false, "show every step, not only those that warned, denied or failed")
	cmd.Flags().StringVarP(&format, "output", "o", "table", "output format: table or json (one JSON object a trace with -f)")
	cmd.Flags().StringVar(&filter.Namespace, "namespace", "", "only requests in this namespace")
	cmd.Flags().StringVar(&filter.Name, "name", "", "only requests for objects of this name")
	cmd.Flags().StringVar(&filter.User, "user", "", "only requests by this user")
	cmd.Flags().StringVar(&outcomeArg, "outcome", "", "only requests with this outcome: allowed, denied or failed")
	cmd.Flags().StringVar(&filter.Verdict, "verdict", "", "only requests with a step of this verdict: allow, warn, deny or error")
	cmd.Flags().IntVar(&limit, "limit", 50, "at most this many of the newest requests (0: all kept)")
	cmd.Flags().BoolVar(&system, "system", false, "also show requests of the control plane's own users (system:...), left out by default unless --user names one")
	return cmd
}

func showTraces(ctx context.Context, out io.Writer, cfg *rest.Config, f trace.Filter, limit int, follow, allSteps bool, format string) error {
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = 0 // -f streams until interrupted
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	q := url.Values{}
	for k, v := range map[string]string{"namespace": f.Namespace, "name": f.Name, "user": f.User, "outcome": f.Outcome, "verdict": f.Verdict} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.NoSystem {
		q.Set("system", "false")
	}
	q.Set("limit", fmt.Sprint(limit))
	if follow {
		q.Set("follow", "true")
	}
	u := strings.TrimSuffix(cfg.Host, "/") + trace.Path + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("reading traces from %s: %w", cfg.Host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%s serves no admission traces: is Gatehouse running there with tracing on (not --trace=false)?", cfg.Host)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("reading traces from %s: %s: %s", cfg.Host, resp.Status, strings.TrimSpace(string(body)))
	}
	if !follow {
		var list struct {
			Traces []*trace.Trace `json:"traces"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
			return fmt.Errorf("reading traces: %w", err)
		}
		if format == "json" {
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			return enc.Encode(list)
		}
		return writeTraceTable(out, list.Traces, allSteps, true)
	}
	scanner := bufio.NewScanner(resp.Body)
	scanner.Buffer(make([]byte, 1<<20), 16<<20)
	for scanner.Scan() {
		if format == "json" {
			fmt.Fprintln(out, scanner.Text())
			continue
		}
		var t trace.Trace
		if err := json.Unmarshal(scanner.Bytes(), &t); err != nil {
			return fmt.Errorf("reading a trace: %w", err)
		}
		if err := writeTraceTable(out, []*trace.Trace{&t}, allSteps, false); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil // interrupted: the normal end of -f
	}
	return scanner.Err()
}

// writeTraceTable writes a line per request and, under it, its steps
// that did more than allow (all with allSteps), message last.
func writeTraceTable(out io.Writer, traces []*trace.Trace, allSteps bool, header bool) error {
	rows := [][]string{}
	if header {
		rows = append(rows, []string{"ID", "TIME", "OUTCOME", "OPERATION", "RESOURCE", "OBJECT", "USER", "ADMISSION"})
	}
	for _, t := range traces {
		object := t.Name
		if t.Namespace != "" {
			object = t.Namespace + "/" + t.Name
		}
		resource := t.Resource
		if t.Group != "" {
			resource += "." + t.Group
		}
		if t.Subresource != "" {
			resource += "/" + t.Subresource
		}
		op := t.Operation
		if t.DryRun {
			op += " (dry run)"
		}
		rows = append(rows, []string{fmt.Sprint(t.ID), t.Time.Local().Format("15:04:05"), strings.ToUpper(t.Outcome), op, resource, object, t.User, t.Admission.Round(10 * time.Microsecond).String()})
	}
	widths := make([]int, 8)
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	var b strings.Builder
	line := func(r []string) {
		for i, c := range r {
			if i == len(r)-1 {
				b.WriteString(c)
				break
			}
			fmt.Fprintf(&b, "%-*s  ", widths[i], c)
		}
		b.WriteString("\n")
	}
	if header {
		line(rows[0])
		rows = rows[1:]
	}
	for i, t := range traces {
		line(rows[i])
		for _, s := range t.Steps {
			if !allSteps && s.Verdict == trace.VerdictAllow && !spoke(s) {
				continue
			}
			msg := s.Message
			if msg == "" && len(s.Warnings) > 0 {
				msg = strings.Join(s.Warnings, "; ")
			}
			plugin := s.Plugin
			if s.Reinvocation {
				plugin += " (again)"
			}
			fmt.Fprintf(&b, "    %-5s  %-10s  %-28s  %8s  %s\n", s.Verdict, s.Phase, plugin, s.Duration.Round(time.Microsecond), oneLineText(msg))
			for _, p := range s.Policies {
				if !allSteps && (p.Verdict == trace.VerdictAllow || p.Verdict == trace.VerdictSkip) {
					continue
				}
				why := p.Message
				switch {
				case p.Verdict == trace.VerdictSkip:
					why = "not matched: " + p.Reason
				case why == "":
					why = p.Reason
				}
				if p.Expression != "" && !strings.Contains(why, p.Expression) {
					why += " [" + p.Expression + "]"
				}
				if p.Patch != nil {
					why += " patch " + compactJSON(p.Patch)
				}
				if p.Exchange != 0 {
					// The call in 'gatehouse webhook log'.
					call := fmt.Sprintf("call %d, %s", p.Exchange, p.CallDuration.Round(time.Millisecond))
					if p.Fault != "" {
						call += ", fault " + p.Fault
					}
					why += " [" + call + "]"
				}
				fmt.Fprintf(&b, "        %-6s  %s %s  %s\n", p.Verdict, p.Kind, p.Name, oneLineText(why))
			}
			if s.Patch != nil && !slices.ContainsFunc(s.Policies, func(p trace.Policy) bool { return p.Patch != nil }) {
				fmt.Fprintf(&b, "        patch   %s\n", compactJSON(s.Patch))
			}
		}
	}
	_, err := io.WriteString(out, b.String())
	return err
}

func compactJSON(raw []byte) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	return b.String()
}

func oneLineText(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// spoke reports whether one of a step's policies did more than allow or
// skip (a mutator's patch, a dryrun violation), worth a line even when the
// step allowed.
func spoke(s trace.Step) bool {
	if s.Patch != nil {
		return true
	}
	for _, p := range s.Policies {
		if p.Verdict != trace.VerdictAllow && p.Verdict != trace.VerdictSkip {
			return true
		}
	}
	return false
}
