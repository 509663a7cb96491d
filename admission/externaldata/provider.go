package externaldata

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/url"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gatehouse-dev/gatehouse/admission/constraint"
)

// Group is the API group of Providers.
const Group = "externaldata.gatekeeper.sh"

// Kind is the Provider kind.
const Kind = "Provider"

// GVR is the Provider resource in its stored version.
var GVR = schema.GroupVersionResource{Group: Group, Version: "v1beta1", Resource: "providers"}

// DefaultTimeout bounds a call to a Provider whose spec.timeout is 0 or
// unset, as Gatekeeper's mutation does (its validation would give such a
// call no time at all).
const DefaultTimeout = 5 * time.Second

// maxNameLength is Gatekeeper's limit on the names of its resources.
const maxNameLength = 63

// Provider is one Provider as the System uses it.
type Provider struct {
	Name string
	// URL is where keys are POSTed (https only).
	URL string
	// Timeout bounds one call.
	Timeout time.Duration
	// CABundle is the PEM that the provider's serving certificate must
	// chain to (the only roots trusted for it).
	CABundle []byte
	// ZeroTimeout records that spec.timeout was 0 or unset (DefaultTimeout
	// applies), for a warning.
	ZeroTimeout bool

	roots      *x509.CertPool
	uid        string
	generation int64
}

type providerSpec struct {
	URL      string `json:"url,omitempty"`
	Timeout  int64  `json:"timeout,omitempty"`
	CABundle string `json:"caBundle,omitempty"`
}

// Parse reads a Provider (v1alpha1 or v1beta1) and validates it as
// Gatekeeper's webhook does, naming the field at fault.
func Parse(u *unstructured.Unstructured) (*Provider, error) {
	if gv, err := schema.ParseGroupVersion(u.GetAPIVersion()); err != nil || gv.Group != Group || u.GetKind() != Kind {
		return nil, fmt.Errorf("not a %s.%s: apiVersion %q, kind %q", Kind, Group, u.GetAPIVersion(), u.GetKind())
	}
	name := u.GetName()
	switch {
	case name == "":
		return nil, fmt.Errorf("metadata.name: provider name can not be empty")
	case len(name) > maxNameLength:
		return nil, fmt.Errorf("metadata.name: resource cannot have metadata.name larger than %d char; length: %d", maxNameLength, len(name))
	}
	raw, _, _ := unstructured.NestedMap(u.Object, "spec")
	var spec providerSpec
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &spec); err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	p := &Provider{Name: name, URL: spec.URL, uid: string(u.GetUID()), generation: u.GetGeneration()}
	if spec.URL == "" {
		return nil, fmt.Errorf("spec.url: invalid provider url. value: %q", spec.URL)
	}
	parsed, err := url.Parse(spec.URL)
	if err != nil || parsed.Host == "" {
		return nil, fmt.Errorf("spec.url: invalid provider url. value: %q", spec.URL)
	}
	if parsed.Scheme != "https" {
		return nil, fmt.Errorf("spec.url: only HTTPS scheme is supported for Providers (got %q)", spec.URL)
	}
	switch {
	case spec.Timeout < 0:
		return nil, fmt.Errorf("spec.timeout: provider timeout should be a positive integer. value: %d", spec.Timeout)
	case spec.Timeout == 0:
		p.Timeout, p.ZeroTimeout = DefaultTimeout, true
	default:
		p.Timeout = time.Duration(spec.Timeout) * time.Second
	}
	if spec.CABundle == "" {
		return nil, fmt.Errorf("spec.caBundle: caBundle should be set for HTTPS scheme (base64 of the PEM that signs the provider's certificate; annotate the Provider gatehouse.dev/inject-ca-bundle: \"true\" for Gatehouse's CA)")
	}
	p.CABundle, err = base64.StdEncoding.DecodeString(spec.CABundle)
	if err != nil {
		return nil, fmt.Errorf("spec.caBundle: failed to base64 decode caBundle: %w", err)
	}
	block, _ := pem.Decode(p.CABundle)
	if block == nil {
		return nil, fmt.Errorf("spec.caBundle: bad caBundle: no PEM block after base64 decoding")
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return nil, fmt.Errorf("spec.caBundle: failed to parse caBundle: %w", err)
	}
	p.roots = x509.NewCertPool()
	if !p.roots.AppendCertsFromPEM(p.CABundle) {
		return nil, fmt.Errorf("spec.caBundle: failed to append provider's CA bundle to certificate pool")
	}
	return p, nil
}

// sameEndpoint reports whether q calls the same endpoint the same way as p,
// so that p's HTTP client can serve q.
func (p *Provider) sameEndpoint(q *Provider) bool {
	return p.URL == q.URL && p.Timeout == q.Timeout && string(p.CABundle) == string(q.CABundle)
}

// servedVersions are the versions Gatekeeper serves, the stored one first.
var servedVersions = []string{"v1beta1", "v1alpha1"}

// CRD is the Provider CRD with Gatekeeper's schema: cluster-scoped,
// v1beta1 stored, v1alpha1 served and deprecated, validation left to the
// admission plugin as Gatekeeper leaves it to its webhook.
func CRD() *apiextensionsv1.CustomResourceDefinition {
	str := apiextensionsv1.JSONSchemaProps{Type: "string"}
	spec := apiextensionsv1.JSONSchemaProps{Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
		"url":      str,
		"timeout":  {Type: "integer"},
		"caBundle": str,
	}}
	return constraint.ClusterCRD(Group, Kind, GVR.Resource, "provider", servedVersions, spec, map[string]string{
		"v1alpha1": "externaldata.gatekeeper.sh/v1alpha1 is deprecated. Use externaldata.gatekeeper.sh/v1beta1 instead.",
	})
}
