package webhooks

import (
	"encoding/json"
	"fmt"

	admissionv1 "k8s.io/api/admission/v1"
	admissionv1beta1 "k8s.io/api/admission/v1beta1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	webhookrequest "k8s.io/apiserver/pkg/admission/plugin/webhook/request"
)

// The codec upstream's webhook client manager decodes answers with
// (k8s.io/apiserver/pkg/util/webhook.NewClientManager, as the webhook
// plugins build it).
var answerCodec = func() runtime.Decoder {
	scheme := runtime.NewScheme()
	_ = admissionv1.AddToScheme(scheme)
	_ = admissionv1beta1.AddToScheme(scheme)
	return serializer.NewCodecFactory(scheme).LegacyCodec(admissionv1.SchemeGroupVersion, admissionv1beta1.SchemeGroupVersion)
}()

// Decision is a webhook's answer as upstream reads it.
type Decision = webhookrequest.AdmissionResponse

// Judge reads answer to request (an AdmissionReview as sent) the way the
// API server does: decoded into an AdmissionReview of the request's
// version, then upstream's VerifyAdmissionResponse. The error is upstream's
// reason for refusing the answer, worded as the API server words it.
func Judge(request, answer []byte, mutating bool) (*Decision, error) {
	var sent struct {
		APIVersion string `json:"apiVersion"`
		Request    struct {
			UID types.UID `json:"uid"`
		} `json:"request"`
	}
	if err := json.Unmarshal(request, &sent); err != nil {
		return nil, fmt.Errorf("the recorded request is no AdmissionReview: %w", err)
	}
	var review runtime.Object = &admissionv1.AdmissionReview{}
	if sent.APIVersion == admissionv1beta1.SchemeGroupVersion.String() {
		review = &admissionv1beta1.AdmissionReview{}
	}
	if err := runtime.DecodeInto(answerCodec, answer, review); err != nil {
		return nil, fmt.Errorf("failed to call webhook: %w", err)
	}
	d, err := webhookrequest.VerifyAdmissionResponse(sent.Request.UID, mutating, review)
	if err != nil {
		return nil, fmt.Errorf("received invalid webhook response: %w", err)
	}
	return d, nil
}
