package webhooks

import (
	"context"
	"net/http"

	"k8s.io/apiserver/pkg/admission"
	webhookinit "k8s.io/apiserver/pkg/admission/plugin/webhook/initializer"
	webhookutil "k8s.io/apiserver/pkg/util/webhook"
	"k8s.io/client-go/rest"
)

// Decorator returns the admission decorator that hooks the kit into the
// webhook plugins (those that take an AuthenticationInfoResolverWrapper):
// their clients get the kit's transport, and each call's context a span
// that names its webhook. It must come first among the decorators, so that
// it sees the plugins themselves; the API server decorates plugins after
// its initializers ran, so the kit's wrapper wraps upstream's.
func (k *Kit) Decorator() admission.Decorator {
	return admission.DecoratorFunc(func(handler admission.Interface, name string) admission.Interface {
		wants, ok := handler.(webhookinit.WantsAuthenticationInfoResolverWrapper)
		if !ok {
			return handler
		}
		wants.SetAuthenticationInfoResolverWrapper(k.resolverWrapper)
		mut, isMut := handler.(admission.MutationInterface)
		val, isVal := handler.(admission.ValidationInterface)
		switch {
		case isMut && isVal:
			return &identityMutatingValidating{identityMutating{handler, mut}, identityValidating{handler, val}}
		case isMut:
			return &identityMutating{handler, mut}
		case isVal:
			return &identityValidating{handler, val}
		}
		return handler
	})
}

// resolverWrapper wraps every webhook client config's transport.
func (k *Kit) resolverWrapper(delegate webhookutil.AuthenticationInfoResolver) webhookutil.AuthenticationInfoResolver {
	wrap := func(c *rest.Config, err error) (*rest.Config, error) {
		if err != nil {
			return nil, err
		}
		// Upstream may hand out a shared config (its own loopback one).
		c = rest.CopyConfig(c)
		c.Wrap(func(rt http.RoundTripper) http.RoundTripper { return k.Wrap(rt) })
		return c, nil
	}
	return &webhookutil.AuthenticationInfoResolverDelegator{
		ClientConfigForFunc: func(hostPort string) (*rest.Config, error) {
			return wrap(delegate.ClientConfigFor(hostPort))
		},
		ClientConfigForServiceFunc: func(name, namespace string, port int) (*rest.Config, error) {
			return wrap(delegate.ClientConfigForService(name, namespace, port))
		},
	}
}

type identityMutating struct {
	admission.Interface
	inner admission.MutationInterface
}

func (m *identityMutating) Admit(ctx context.Context, a admission.Attributes, o admission.ObjectInterfaces) error {
	return m.inner.Admit(WithIdentitySpan(ctx), a, o)
}

type identityValidating struct {
	admission.Interface
	inner admission.ValidationInterface
}

func (v *identityValidating) Validate(ctx context.Context, a admission.Attributes, o admission.ObjectInterfaces) error {
	return v.inner.Validate(WithIdentitySpan(ctx), a, o)
}

type identityMutatingValidating struct {
	identityMutating
	identityValidating
}

func (m *identityMutatingValidating) Handles(op admission.Operation) bool {
	return m.identityMutating.Handles(op)
}
