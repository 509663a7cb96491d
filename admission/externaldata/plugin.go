package externaldata

import (
	"context"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/warning"
)

// PluginName is the admission plugin that refuses Providers Gatekeeper's
// webhook would refuse, so that none is stored and silently not in force.
// Calling providers is the constraint engine's work (the external_data
// builtin) and the mutators'.
const PluginName = "GatekeeperExternalDataProviders"

// Register registers the plugin.
func Register(plugins *admission.Plugins) {
	plugins.Register(PluginName, func(io.Reader) (admission.Interface, error) {
		return NewPlugin(), nil
	})
}

// Plugin validates Providers on create and update.
type Plugin struct {
	*admission.Handler
}

var _ admission.ValidationInterface = &Plugin{}

// NewPlugin returns the plugin.
func NewPlugin() *Plugin {
	return &Plugin{Handler: admission.NewHandler(admission.Create, admission.Update)}
}

// Validate refuses a Provider that does not parse, naming the field, and
// warns about a timeout of 0.
func (p *Plugin) Validate(ctx context.Context, attrs admission.Attributes, _ admission.ObjectInterfaces) error {
	if attrs.GetResource().GroupResource() != GVR.GroupResource() || attrs.GetSubresource() != "" {
		return nil
	}
	u, ok := attrs.GetObject().(*unstructured.Unstructured)
	if !ok {
		return nil
	}
	provider, err := Parse(u)
	if err != nil {
		return admission.NewForbidden(attrs, err)
	}
	if provider.ZeroTimeout {
		warning.AddWarning(ctx, "", fmt.Sprintf("spec.timeout is 0 or unset: Gatehouse gives each call %s, as Gatekeeper's mutation does (Gatekeeper's validation would give it no time at all); set it explicitly", DefaultTimeout))
	}
	return nil
}
