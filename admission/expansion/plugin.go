package expansion

import (
	"context"
	"io"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apiserver/pkg/admission"
)

// PluginName is the admission plugin that refuses ExpansionTemplates
// Gatekeeper's webhook would refuse, so none is stored and silently not
// in force. Expanding workloads is the constraint plugin's work (see
// constraint.Expander).
const PluginName = "GatekeeperExpansionTemplates"

// Register registers the plugin.
func Register(plugins *admission.Plugins) {
	plugins.Register(PluginName, func(io.Reader) (admission.Interface, error) {
		return NewPlugin(), nil
	})
}

// Plugin validates ExpansionTemplates on create and update.
type Plugin struct {
	*admission.Handler
}

var _ admission.ValidationInterface = &Plugin{}

// NewPlugin returns the plugin.
func NewPlugin() *Plugin {
	return &Plugin{Handler: admission.NewHandler(admission.Create, admission.Update)}
}

// Validate refuses a template that does not parse, naming the field.
func (p *Plugin) Validate(_ context.Context, attrs admission.Attributes, _ admission.ObjectInterfaces) error {
	if attrs.GetResource().GroupResource() != GVR.GroupResource() || attrs.GetSubresource() != "" {
		return nil
	}
	u, ok := attrs.GetObject().(*unstructured.Unstructured)
	if !ok {
		return nil
	}
	if _, err := Parse(u); err != nil {
		return admission.NewForbidden(attrs, err)
	}
	return nil
}
