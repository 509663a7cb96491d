package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/gatehouse-dev/gatehouse/admission/externaldata"
	"github.com/gatehouse-dev/gatehouse/webhooks"
)

func newWebhookLogCommand() *cobra.Command {
	var (
		cluster clusterFlags
		follow  bool
		format  string
		limit   int
	)
	cmd := &cobra.Command{
		Use:   "log [NAME]",
		Short: "Show the calls the API server made to admission webhooks",
		Long: `Print the calls of admission webhooks that a running Gatehouse recorded, oldest
first: for each, the webhook (configuration/name), the request's uid, what
upstream made of the answer (allowed, denied with its message, or why it
refused the answer), the HTTP status, the time, and any fault or stub.
NAME selects one webhook (its name, or configuration/name). -f keeps printing
new calls.

-o json prints each call as a JSON line with the AdmissionReview as sent and
the answer as received (answers over 256 KiB are cut, with their size): save
it to a file for 'gatehouse webhook replay --from' and
'gatehouse check --stub-webhooks'. The newest --webhook-log-size (1,000)
calls of each webhook are kept.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "json" {
				return usageErrorf("--output %q: must be table or json", format)
			}
			cfg, err := cluster.restConfig(cmd)
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			return showExchanges(ctx, cmd.OutOrStdout(), cfg, name, limit, follow, format)
		},
	}
	cluster.add(cmd)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new calls")
	cmd.Flags().StringVarP(&format, "output", "o", "table", "output format: table or json (one JSON object a call)")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many of the newest calls (0: all kept)")
	return cmd
}

// fetchExchanges reads the recorded calls of webhook (all when "").
func fetchExchanges(ctx context.Context, cfg *rest.Config, webhook string, limit int, follow bool) (io.ReadCloser, error) {
	q := url.Values{}
	if webhook != "" {
		q.Set("webhook", webhook)
	}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	if follow {
		q.Set("follow", "true")
	}
	resp, err := gatehouseRequest(ctx, cfg, http.MethodGet, webhooks.ExchangesPath+"?"+q.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("reading the webhook log: %w", err)
	}
	return resp.Body, nil
}

func showExchanges(ctx context.Context, out io.Writer, cfg *rest.Config, webhook string, limit int, follow bool, format string) error {
	body, err := fetchExchanges(ctx, cfg, webhook, limit, follow)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	header := format == "table"
	for sc.Scan() {
		if format == "json" {
			fmt.Fprintln(out, sc.Text())
			continue
		}
		var e webhooks.Exchange
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("reading a call: %w", err)
		}
		if header {
			fmt.Fprintf(out, "%-5s  %-8s  %-40s  %-36s  %-6s  %9s  %s\n", "ID", "TIME", "WEBHOOK", "UID", "HTTP", "DURATION", "RESULT")
			header = false
		}
		status := "-"
		if e.StatusCode != 0 {
			status = fmt.Sprint(e.StatusCode)
		}
		fmt.Fprintf(out, "%-5d  %-8s  %-40s  %-36s  %-6s  %9s  %s\n", e.ID, e.Time.Local().Format("15:04:05"), e.Key(), e.UID, status, e.Duration.Round(time.Millisecond), exchangeResult(&e))
	}
	if ctx.Err() != nil {
		return nil // interrupted: the normal end of -f
	}
	return sc.Err()
}

// exchangeResult says in a line what the call came to.
func exchangeResult(e *webhooks.Exchange) string {
	var parts []string
	switch {
	case e.TimedOut:
		parts = append(parts, "timed out: "+e.Error)
	case e.Error != "":
		parts = append(parts, "failed: "+e.Error)
	case e.Truncated:
		parts = append(parts, fmt.Sprintf("answer of %d bytes (recorded cut at %d)", e.ResponseBytes, webhooks.MaxRecordedAnswer))
	case e.StatusCode != http.StatusOK:
		parts = append(parts, "HTTP "+fmt.Sprint(e.StatusCode)+": "+oneLineText(firstN(string(e.Response)+e.ResponseText, 200)))
	case e.Kind == webhooks.KindProvider:
		parts = append(parts, providerResult(e))
	default:
		answer := []byte(e.Response)
		if answer == nil {
			answer = []byte(e.ResponseText)
		}
		d, err := webhooks.Judge(e.Request, answer, e.Kind == webhooks.KindMutating)
		switch {
		case err != nil:
			parts = append(parts, "refused answer: "+err.Error())
		case d.Allowed && len(d.Patch) > 0:
			parts = append(parts, "allowed with patch "+compactJSON(d.Patch))
		case d.Allowed:
			parts = append(parts, "allowed")
		default:
			msg := ""
			if d.Result != nil {
				msg = d.Result.Message
			}
			parts = append(parts, "denied: "+msg)
		}
		if d != nil && len(d.Warnings) > 0 {
			parts = append(parts, "warnings: "+strings.Join(d.Warnings, "; "))
		}
	}
	if e.Fault != "" {
		parts = append(parts, "[fault "+e.Fault+"]")
	}
	if e.Stubbed {
		parts = append(parts, "[stubbed]")
	}
	return oneLineText(strings.Join(parts, " "))
}

// providerResult says what an external data provider answered.
func providerResult(e *webhooks.Exchange) string {
	var answer externaldata.ProviderResponse
	if err := json.Unmarshal(e.Response, &answer); err != nil {
		return "answer is not a ProviderResponse: " + oneLineText(firstN(e.ResponseText, 200))
	}
	if answer.Response.SystemError != "" {
		return "system error: " + answer.Response.SystemError
	}
	failed := 0
	for _, it := range answer.Response.Items {
		if it.Error != "" {
			failed++
		}
	}
	out := fmt.Sprintf("answered %d keys", len(answer.Response.Items))
	if failed > 0 {
		out += fmt.Sprintf(", %d with an error", failed)
	}
	if !answer.Response.Idempotent {
		out += " (not idempotent)"
	}
	return out
}

func firstN(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
