package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
)

func newWebhookCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "webhook",
		Short: "Develop admission webhooks against Gatehouse: certificates, call log, faults, replay",
		Long: `The webhook developer kit.

  certs    a serving certificate for your webhook from the Gatehouse CA;
           configurations annotated gatehouse.dev/inject-ca-bundle: "true"
           get the CA as their caBundle on admission
  log      every call the API server made to a webhook: the AdmissionReview
           sent, the answer (or error, timeout), the time and any fault
  fault    make a webhook's calls fail, hang, slow down or return a bad patch
  replay   send recorded calls to another endpoint (the next version of your
           webhook) and show where its decisions differ`,
	}
	cmd.AddCommand(newWebhookCertsCommand(), newWebhookLogCommand(), newWebhookFaultCommand(), newWebhookReplayCommand())
	return cmd
}

// gatehouseRequest sends one request to a Gatehouse endpoint of the API
// server in cfg; a non-2xx answer is an error with the server's words.
func gatehouseRequest(ctx context.Context, cfg *rest.Config, method, path string, body io.Reader) (*http.Response, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = 0 // followers stream until interrupted
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(cfg.Host, "/")+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Host, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		resp.Body.Close()
		return nil, fmt.Errorf("%s does not serve %s: is Gatehouse running there?", cfg.Host, path)
	}
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %s: %s", cfg.Host, resp.Status, strings.TrimSpace(string(msg)))
	}
	return resp, nil
}
