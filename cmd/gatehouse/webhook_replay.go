package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/webhooks"
)

func newWebhookReplayCommand() *cobra.Command {
	var (
		cluster       clusterFlags
		from, webhook string
		to, caFile    string
		insecure      bool
		timeout       time.Duration
	)
	cmd := &cobra.Command{
		Use:   "replay --from FILE|--webhook NAME --to URL",
		Short: "Send recorded webhook calls to another endpoint and diff its decisions",
		Long: `Send the AdmissionReviews a webhook was sent (from --from, a file of
'gatehouse webhook log -o json' or --webhook-log-file lines, or from the log
of the running Gatehouse for --webhook NAME) to --to, the next version of the
webhook, and compare each answer's decision with the recorded one, both read
as the API server reads them (upstream's VerifyAdmissionResponse): allowed,
code, message, patch (compared as JSON), patchType and warnings.

Calls answered by a fault or a stub are skipped. Exit status: 0 when no
decision differs, 1 when one does (or a call fails), 2 for usage errors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (from == "") == (webhook == "") {
				return usageErrorf("give one of --from FILE or --webhook NAME")
			}
			if to == "" {
				return usageErrorf("--to: give the URL of the webhook to replay to")
			}
			tlsConfig := &tls.Config{InsecureSkipVerify: insecure}
			if caFile != "" {
				pem, err := os.ReadFile(caFile)
				if err != nil {
					return usageErrorf("--ca-file: %v", err)
				}
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(pem) {
					return usageErrorf("--ca-file %s: no PEM certificate", caFile)
				}
				tlsConfig.RootCAs = pool
			}
			var exchanges []*webhooks.Exchange
			var err error
			if from != "" {
				if exchanges, err = webhooks.ReadExchangesFile(from); err != nil {
					return usageErrorf("--from: %v", err)
				}
			} else {
				cfg, err := cluster.restConfig(cmd)
				if err != nil {
					return err
				}
				body, err := fetchExchanges(cmd.Context(), cfg, webhook, 0, false)
				if err != nil {
					return err
				}
				exchanges, err = webhooks.ReadExchanges(body)
				body.Close()
				if err != nil {
					return fmt.Errorf("reading the webhook log: %w", err)
				}
			}
			// Replay compares admission decisions: external data
			// providers' calls, logged alongside, have none.
			exchanges = slices.DeleteFunc(exchanges, func(e *webhooks.Exchange) bool { return e.Kind == webhooks.KindProvider })
			if len(exchanges) == 0 {
				return errors.New("no recorded calls of admission webhooks to replay")
			}
			client := &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: tlsConfig}}
			results := webhooks.Replay(cmd.Context(), client, to, exchanges)
			out := cmd.OutOrStdout()
			differ, same, skipped := 0, 0, 0
			for _, r := range results {
				e := r.Exchange
				switch {
				case r.Skipped != "":
					skipped++
					fmt.Fprintf(out, "SKIP    %d %s uid %s: %s\n", e.ID, e.Key(), e.UID, r.Skipped)
				case len(r.Diffs) > 0:
					differ++
					fmt.Fprintf(out, "DIFFER  %d %s uid %s\n", e.ID, e.Key(), e.UID)
					for _, d := range r.Diffs {
						fmt.Fprintf(out, "        %s\n", d)
					}
				default:
					same++
					fmt.Fprintf(out, "SAME    %d %s uid %s\n", e.ID, e.Key(), e.UID)
				}
			}
			fmt.Fprintf(out, "%d replayed: %d same, %d differ; %d skipped\n", same+differ, same, differ, skipped)
			if differ > 0 {
				return failedError{}
			}
			return nil
		},
	}
	cluster.add(cmd)
	cmd.Flags().StringVar(&from, "from", "", "file of recorded calls (JSON lines)")
	cmd.Flags().StringVar(&webhook, "webhook", "", "replay the recorded calls of this webhook (name, or configuration/name) from the running Gatehouse")
	cmd.Flags().StringVar(&to, "to", "", "URL of the webhook to send the calls to")
	cmd.Flags().StringVar(&caFile, "ca-file", "", "CA that signed the --to server's certificate")
	cmd.Flags().BoolVar(&insecure, "insecure-skip-tls-verify", false, "do not verify the --to server's certificate")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "timeout of each call")
	return cmd
}
