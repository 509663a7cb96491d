// Command webhook is an example admission webhook for the Gatehouse webhook
// kit, written with controller-runtime's webhook/admission package: a
// validating webhook that requires labels on pods (--require-labels, by
// default "team") and a mutating one that gives pods an "environment" label
// when they have none (--default-environment, by default "dev"). See
// README.md for the walkthrough against Gatehouse.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// RequireLabels denies pods that lack any of Labels.
type RequireLabels struct {
	Labels  []string
	Decoder admission.Decoder
}

// Handle implements admission.Handler.
func (h *RequireLabels) Handle(_ context.Context, req admission.Request) admission.Response {
	pod := &corev1.Pod{}
	if err := h.Decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the pod: %w", err))
	}
	var missing []string
	for _, l := range h.Labels {
		if _, ok := pod.Labels[l]; !ok {
			missing = append(missing, l)
		}
	}
	if len(missing) > 0 {
		return admission.Denied(fmt.Sprintf("pod %q must have the label(s) %s", pod.Name+pod.GenerateName, strings.Join(missing, ", ")))
	}
	return admission.Allowed("")
}

// DefaultEnvironment labels pods environment=Value unless they have an
// environment label.
type DefaultEnvironment struct {
	Value   string
	Decoder admission.Decoder
}

// Handle implements admission.Handler.
func (h *DefaultEnvironment) Handle(_ context.Context, req admission.Request) admission.Response {
	pod := &corev1.Pod{}
	if err := h.Decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the pod: %w", err))
	}
	if _, ok := pod.Labels["environment"]; ok {
		return admission.Allowed("")
	}
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels["environment"] = h.Value
	current, err := json.Marshal(pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, current)
}

// Handlers returns the HTTP handlers of both webhooks, by path.
func Handlers(requireLabels []string, environment string) (map[string]http.Handler, error) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	decoder := admission.NewDecoder(scheme)
	requireLabels = slices.DeleteFunc(requireLabels, func(s string) bool { return s == "" })
	out := map[string]http.Handler{}
	for path, h := range map[string]admission.Handler{
		"/validate-pods": &RequireLabels{Labels: requireLabels, Decoder: decoder},
		"/mutate-pods":   &DefaultEnvironment{Value: environment, Decoder: decoder},
	} {
		handler, err := admission.StandaloneWebhook(&admission.Webhook{Handler: h}, admission.StandaloneOptions{})
		if err != nil {
			return nil, err
		}
		out[path] = handler
	}
	return out, nil
}
