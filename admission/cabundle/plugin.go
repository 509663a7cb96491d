package cabundle

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/kubernetes/pkg/apis/admissionregistration"

	"github.com/gatehouse-dev/gatehouse/admission/externaldata"
	"github.com/gatehouse-dev/gatehouse/webhooks"
)

// PluginName is the plugin's name in the admission chain.
const PluginName = "GatehouseCABundleInjection"

// Annotation asks for the injection; its only accepted value is "true".
const Annotation = "gatehouse.dev/inject-ca-bundle"

// Register registers the plugin, which injects ca (PEM).
func Register(plugins *admission.Plugins, ca []byte) {
	plugins.Register(PluginName, func(io.Reader) (admission.Interface, error) {
		return NewPlugin(ca), nil
	})
}

// Plugin injects the CA bundle.
type Plugin struct {
	*admission.Handler
	ca []byte
}

var _ admission.MutationInterface = &Plugin{}

// NewPlugin returns the plugin for ca (PEM).
func NewPlugin(ca []byte) *Plugin {
	return &Plugin{Handler: admission.NewHandler(admission.Create, admission.Update), ca: slices.Clone(ca)}
}

// Admit sets the caBundle of an annotated configuration's webhooks.
func (p *Plugin) Admit(_ context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	if a.GetSubresource() != "" {
		return nil
	}
	switch a.GetKind().Group {
	case admissionregistration.GroupName:
	case externaldata.Group:
		return p.admitProvider(a)
	default:
		return nil
	}
	var annotations map[string]string
	var configs []*admissionregistration.WebhookClientConfig
	switch obj := a.GetObject().(type) {
	case *admissionregistration.ValidatingWebhookConfiguration:
		annotations = obj.Annotations
		for i := range obj.Webhooks {
			configs = append(configs, &obj.Webhooks[i].ClientConfig)
		}
	case *admissionregistration.MutatingWebhookConfiguration:
		annotations = obj.Annotations
		for i := range obj.Webhooks {
			configs = append(configs, &obj.Webhooks[i].ClientConfig)
		}
	default:
		return nil
	}
	annotationsPath := field.NewPath("metadata", "annotations")
	var errs field.ErrorList
	if v, ok := annotations[webhooks.FaultAnnotation]; ok {
		if _, err := webhooks.ParseFault(v); err != nil {
			errs = append(errs, field.Invalid(annotationsPath.Key(webhooks.FaultAnnotation), v, err.Error()))
		}
	}
	inject, err := p.injects(a, annotations)
	errs = append(errs, err...)
	if len(errs) > 0 {
		return apierrors.NewInvalid(a.GetKind().GroupKind(), a.GetName(), errs)
	}
	if !inject {
		return nil
	}
	for _, c := range configs {
		c.CABundle = slices.Clone(p.ca)
	}
	return nil
}

// admitProvider sets the spec.caBundle (base64 of the PEM) of an annotated
// Gatekeeper external data Provider.
func (p *Plugin) admitProvider(a admission.Attributes) error {
	u, ok := a.GetObject().(*unstructured.Unstructured)
	if !ok || u.GetKind() != externaldata.Kind {
		return nil
	}
	inject, errs := p.injects(a, u.GetAnnotations())
	if len(errs) > 0 {
		return apierrors.NewInvalid(a.GetKind().GroupKind(), a.GetName(), errs)
	}
	if !inject {
		return nil
	}
	if err := unstructured.SetNestedField(u.Object, base64.StdEncoding.EncodeToString(p.ca), "spec", "caBundle"); err != nil {
		return apierrors.NewInvalid(a.GetKind().GroupKind(), a.GetName(), field.ErrorList{field.Invalid(field.NewPath("spec"), u.Object["spec"], err.Error())})
	}
	return nil
}

// injects reports whether the annotation asks for the injection, refusing
// values other than "true"; an error when there is no CA to inject.
func (p *Plugin) injects(a admission.Attributes, annotations map[string]string) (bool, field.ErrorList) {
	v, ok := annotations[Annotation]
	if !ok {
		return false, nil
	}
	if v != "true" {
		return false, field.ErrorList{field.NotSupported(field.NewPath("metadata", "annotations").Key(Annotation), v, []string{"true"})}
	}
	if len(p.ca) == 0 {
		return false, field.ErrorList{field.InternalError(field.NewPath("metadata", "annotations").Key(Annotation), fmt.Errorf("%s: no Gatehouse CA to inject", PluginName))}
	}
	return true, nil
}
