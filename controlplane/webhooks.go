package controlplane

import (
	"context"
	"fmt"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gatehouse-dev/gatehouse/config"
	"github.com/gatehouse-dev/gatehouse/webhooks"
)

// newWebhookKit makes the webhook kit of cfg: its log, log file and stubs.
func newWebhookKit(cfg *config.Config) (*webhooks.Kit, error) {
	opts := webhooks.Options{LogSize: cfg.WebhookLogSize, LogFile: cfg.WebhookLogFile}
	if cfg.WebhookStubs != "" {
		exchanges, err := webhooks.ReadExchangesFile(cfg.WebhookStubs)
		if err != nil {
			return nil, fmt.Errorf("webhook stubs: %w", err)
		}
		opts.Stubs = webhooks.NewStubs(exchanges)
	}
	kit, err := webhooks.New(opts)
	if err != nil {
		return nil, fmt.Errorf("--webhook-log-file %s: %w", cfg.WebhookLogFile, err)
	}
	return kit, nil
}

// readFaultAnnotations makes kit read the fault annotations of webhook
// configurations from informers that run until ctx is done.
func readFaultAnnotations(ctx context.Context, admin *rest.Config, kit *webhooks.Kit) error {
	client, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return err
	}
	f := informers.NewSharedInformerFactory(client, 0)
	validating := f.Admissionregistration().V1().ValidatingWebhookConfigurations().Lister()
	mutating := f.Admissionregistration().V1().MutatingWebhookConfigurations().Lister()
	f.Start(ctx.Done())
	kit.ReadAnnotations(func(kind, name string) string {
		if kind == webhooks.KindMutating {
			if c, err := mutating.Get(name); err == nil {
				return c.Annotations[webhooks.FaultAnnotation]
			}
			return ""
		}
		if c, err := validating.Get(name); err == nil {
			return c.Annotations[webhooks.FaultAnnotation]
		}
		return ""
	})
	return nil
}
