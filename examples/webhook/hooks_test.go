package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// review sends an AdmissionReview for pod to the handler at path, as the
// API server does, and returns the response.
func review(t *testing.T, h http.Handler, pod *corev1.Pod) *admissionv1.AdmissionResponse {
	t.Helper()
	raw, _ := json.Marshal(pod)
	in := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "uid-1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Operation: admissionv1.Create,
			Name: pod.Name, Namespace: "default", Object: runtime.RawExtension{Raw: raw}},
	}
	body, _ := json.Marshal(in)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, req)
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
		t.Fatalf("answer %s: %v", rec.Body.String(), err)
	}
	if out.Response.UID != "uid-1" {
		t.Errorf("uid %q, want uid-1", out.Response.UID)
	}
	return out.Response
}

func pod(labels map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
}

func TestRequireLabels(t *testing.T) {
	h, err := Handlers([]string{"team"}, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if r := review(t, h["/validate-pods"], pod(map[string]string{"team": "a"})); !r.Allowed {
		t.Errorf("pod with team denied: %v", r.Result)
	}
	r := review(t, h["/validate-pods"], pod(nil))
	if r.Allowed || !strings.Contains(r.Result.Message, "team") {
		t.Errorf("pod without team: allowed %v, %v", r.Allowed, r.Result)
	}
	// The next version requires an owner too.
	next, _ := Handlers([]string{"team", "owner"}, "dev")
	if r := review(t, next["/validate-pods"], pod(map[string]string{"team": "a"})); r.Allowed || !strings.Contains(r.Result.Message, "owner") {
		t.Errorf("next version: allowed %v, %v", r.Allowed, r.Result)
	}
}

func TestDefaultEnvironment(t *testing.T) {
	h, _ := Handlers([]string{"team"}, "dev")
	r := review(t, h["/mutate-pods"], pod(map[string]string{"team": "a"}))
	if !r.Allowed || r.PatchType == nil || !strings.Contains(string(r.Patch), `"environment":"dev"`) && !strings.Contains(string(r.Patch), `/metadata/labels/environment`) {
		t.Errorf("patch %s", r.Patch)
	}
	r = review(t, h["/mutate-pods"], pod(map[string]string{"environment": "prod"}))
	if !r.Allowed || len(r.Patch) != 0 {
		t.Errorf("pod with environment patched: %s", r.Patch)
	}
}
