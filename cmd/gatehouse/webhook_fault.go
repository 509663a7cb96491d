package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gatehouse-dev/gatehouse/admission/externaldata"
	"github.com/gatehouse-dev/gatehouse/webhooks"
)

func newWebhookFaultCommand() *cobra.Command {
	var (
		cluster clusterFlags
		f       webhooks.Fault
		clear   bool
	)
	cmd := &cobra.Command{
		Use:   "fault [NAME --latency D|--status N|--timeout|--bad-patch|--refuse|--clear]",
		Short: "Make a webhook's calls fail, hang, slow down or answer a bad patch",
		Long: `Set a fault on every call of the webhooks named NAME (the webhook's name in its
configuration), applied in the API server's webhook client, to see what your
failurePolicy and timeoutSeconds make of it in 'gatehouse trace':

  --latency D    wait D before calling (adds to the other faults)
  --status N     answer HTTP N without calling the webhook
  --timeout      hang until the call's timeout
  --bad-patch    call the webhook, then answer with a patch that does not apply
  --refuse       fail as a refused connection
  --clear        remove the fault

Without NAME or flags it lists the faults set. A configuration can also carry
its faults for all its webhooks: gatehouse.dev/fault: "latency=3s,status=500".
A fault set here wins over the annotation. Faults last until Gatehouse stops.

NAME may also be a Gatekeeper external data Provider: its calls are faulted
the same way (--bad-patch means nothing to a provider), and logged by
'gatehouse webhook log NAME'.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := cluster.restConfig(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			set := !f.IsZero() || clear
			if len(args) == 0 {
				if set {
					return usageErrorf("give the webhook's NAME to set a fault on")
				}
				return listFaults(ctx, cmd, cfg)
			}
			name := args[0]
			if !set {
				return listFaults(ctx, cmd, cfg)
			}
			if clear && !f.IsZero() {
				return usageErrorf("--clear takes no other fault flag")
			}
			if _, err := webhooks.ParseFault(f.String()); err != nil && !clear {
				return usageErrorf("%v", err)
			}
			body, _ := json.Marshal(webhooks.FaultSetting{Webhook: name, Fault: f.String()})
			resp, err := gatehouseRequest(ctx, cfg, http.MethodPut, webhooks.FaultsPath, bytes.NewReader(body))
			if err != nil {
				return fmt.Errorf("setting the fault: %w", err)
			}
			resp.Body.Close()
			if !clear {
				if found, err := webhookExists(ctx, cfg, name); err == nil && !found {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: no webhook named %q exists yet; the fault applies once one does\n", name)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "fault on %s: %s\n", name, f)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "fault on %s cleared\n", name)
			}
			return nil
		},
	}
	cluster.add(cmd)
	cmd.Flags().DurationVar(&f.Latency, "latency", 0, "delay every call by this long")
	cmd.Flags().IntVar(&f.Status, "status", 0, "answer with this HTTP status (400-599) without calling")
	cmd.Flags().BoolVar(&f.Timeout, "timeout", false, "hang until the call's timeout")
	cmd.Flags().BoolVar(&f.BadPatch, "bad-patch", false, "answer the webhook's answer with a patch that does not apply")
	cmd.Flags().BoolVar(&f.Refuse, "refuse", false, "fail as a refused connection")
	cmd.Flags().BoolVar(&clear, "clear", false, "remove the webhook's fault")
	return cmd
}

func listFaults(ctx context.Context, cmd *cobra.Command, cfg *rest.Config) error {
	resp, err := gatehouseRequest(ctx, cfg, http.MethodGet, webhooks.FaultsPath, nil)
	if err != nil {
		return fmt.Errorf("reading the faults: %w", err)
	}
	defer resp.Body.Close()
	var list struct {
		Faults []webhooks.FaultSetting `json:"faults"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return fmt.Errorf("reading the faults: %w", err)
	}
	out := cmd.OutOrStdout()
	if len(list.Faults) == 0 {
		fmt.Fprintln(out, "no faults set")
		return nil
	}
	fmt.Fprintf(out, "%-40s  %s\n", "WEBHOOK", "FAULT")
	for _, s := range list.Faults {
		fmt.Fprintf(out, "%-40s  %s\n", s.Webhook, s.Fault)
	}
	return nil
}

// webhookExists reports whether a webhook configuration has a webhook named
// name.
func webhookExists(ctx context.Context, cfg *rest.Config, name string) (bool, error) {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	vs, err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, err
	}
	for _, c := range vs.Items {
		for _, w := range c.Webhooks {
			if w.Name == name {
				return true, nil
			}
		}
	}
	ms, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, err
	}
	for _, c := range ms.Items {
		for _, w := range c.Webhooks {
			if w.Name == name {
				return true, nil
			}
		}
	}
	// A Gatekeeper external data Provider is faulted by name too.
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return false, err
	}
	if _, err := dyn.Resource(externaldata.GVR).Get(ctx, name, metav1.GetOptions{}); err == nil {
		return true, nil
	} else if !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err) {
		return false, err
	}
	return false, nil
}
