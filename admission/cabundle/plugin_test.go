package cabundle

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/kubernetes/pkg/apis/admissionregistration"
)

func attrs(obj runtime.Object, kind string) admission.Attributes {
	gvk := schema.GroupVersionKind{Group: "admissionregistration.k8s.io", Version: "v1", Kind: kind}
	return admission.NewAttributesRecord(obj, nil, gvk, "", "cfg", schema.GroupVersionResource{Group: gvk.Group, Version: "v1", Resource: strings.ToLower(kind) + "s"}, "", admission.Create, nil, false, nil)
}

func TestInjects(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	p := NewPlugin(ca)
	url := "https://127.0.0.1:9443/validate"
	v := &admissionregistration.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "cfg", Annotations: map[string]string{Annotation: "true"}},
		Webhooks: []admissionregistration.ValidatingWebhook{
			{Name: "url.example.com", ClientConfig: admissionregistration.WebhookClientConfig{URL: &url}},
			{Name: "svc.example.com", ClientConfig: admissionregistration.WebhookClientConfig{Service: &admissionregistration.ServiceReference{Namespace: "default", Name: "hook"}, CABundle: []byte("old")}},
		},
	}
	if err := p.Admit(context.Background(), attrs(v, "ValidatingWebhookConfiguration"), nil); err != nil {
		t.Fatal(err)
	}
	for _, w := range v.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, ca) {
			t.Errorf("%s: caBundle %q, want the CA", w.Name, w.ClientConfig.CABundle)
		}
	}
	m := &admissionregistration.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "cfg", Annotations: map[string]string{Annotation: "true"}},
		Webhooks:   []admissionregistration.MutatingWebhook{{Name: "m.example.com", ClientConfig: admissionregistration.WebhookClientConfig{URL: &url}}},
	}
	if err := p.Admit(context.Background(), attrs(m, "MutatingWebhookConfiguration"), nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.Webhooks[0].ClientConfig.CABundle, ca) {
		t.Errorf("mutating: caBundle not injected")
	}
	// Without the annotation nothing changes.
	plain := &admissionregistration.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "cfg"},
		Webhooks: []admissionregistration.ValidatingWebhook{{Name: "x", ClientConfig: admissionregistration.WebhookClientConfig{URL: &url}}}}
	if err := p.Admit(context.Background(), attrs(plain, "ValidatingWebhookConfiguration"), nil); err != nil || plain.Webhooks[0].ClientConfig.CABundle != nil {
		t.Errorf("unannotated: err %v, caBundle %q", err, plain.Webhooks[0].ClientConfig.CABundle)
	}
}

func TestRefusesBadAnnotations(t *testing.T) {
	p := NewPlugin([]byte("ca"))
	for _, tc := range []struct{ key, value, want string }{
		{Annotation, "yes", Annotation},
		{"gatehouse.dev/fault", "latency=fast", "gatehouse.dev/fault"},
		{"gatehouse.dev/fault", "status=500,timeout", "exclude each other"},
	} {
		v := &admissionregistration.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Annotations: map[string]string{tc.key: tc.value}}}
		err := p.Admit(context.Background(), attrs(v, "ValidatingWebhookConfiguration"), nil)
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%q: %v, want an Invalid error naming %q", tc.key, tc.value, err, tc.want)
		}
	}
	ok := &admissionregistration.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Annotations: map[string]string{"gatehouse.dev/fault": "latency=3s,status=500"}}}
	if err := p.Admit(context.Background(), attrs(ok, "ValidatingWebhookConfiguration"), nil); err != nil {
		t.Errorf("a good fault annotation: %v", err)
	}
}

func TestInjectsIntoProviders(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	p := NewPlugin(ca)
	provider := func(annotations map[string]any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "externaldata.gatekeeper.sh/v1beta1", "kind": "Provider",
			"metadata": map[string]any{"name": "p", "annotations": annotations},
			"spec":     map[string]any{"url": "https://127.0.0.1:8443/", "timeout": int64(3)},
		}}
	}
	providerAttrs := func(u *unstructured.Unstructured) admission.Attributes {
		gvk := schema.GroupVersionKind{Group: "externaldata.gatekeeper.sh", Version: "v1beta1", Kind: "Provider"}
		return admission.NewAttributesRecord(u, nil, gvk, "", "p", schema.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: "providers"}, "", admission.Create, nil, false, nil)
	}
	u := provider(map[string]any{Annotation: "true"})
	if err := p.Admit(context.Background(), providerAttrs(u), nil); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := unstructured.NestedString(u.Object, "spec", "caBundle"); got != base64.StdEncoding.EncodeToString(ca) {
		t.Errorf("spec.caBundle = %q, want the CA in base64", got)
	}
	plain := provider(nil)
	if err := p.Admit(context.Background(), providerAttrs(plain), nil); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := unstructured.NestedString(plain.Object, "spec", "caBundle"); found {
		t.Error("an unannotated Provider got a caBundle")
	}
	err := p.Admit(context.Background(), providerAttrs(provider(map[string]any{Annotation: "yes"})), nil)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), Annotation) {
		t.Errorf("annotation %q: %v, want an Invalid error naming it", "yes", err)
	}
}
