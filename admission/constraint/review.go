package constraint

import (
	"encoding/json"
	"errors"
	"fmt"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/generic"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/request"
	"k8s.io/apiserver/pkg/authentication/user"
)

// errDeleteWithoutOldObject is what Gatekeeper answers a DELETE request
// without oldObject with (pkg/util/request_validation.go ErrOldObjectIsNil):
// it has nothing to review.
var errDeleteWithoutOldObject = errors.New("oldObject cannot be nil for DELETE operations")

// Review builds Gatekeeper's input.review for one admission request: the
// AdmissionRequest that Gatekeeper's webhook would have received, as the
// generic value Rego sees.
//
// The request is built by the API server's own webhook code
// (request.CreateV1AdmissionReview) with the invocation a webhook gets whose
// rules select the request's own resource, as Gatekeeper's do (groups,
// resources and versions "*"): kind, resource and subResource are the
// request's, and object and oldObject are converted to the request's
// version (attrs.GetKind()) with admission.NewVersionedAttributes, as the
// webhook dispatcher does. Gatekeeper's webhook accepts AdmissionReview
// v1, which is what the API server then sends.
//
// The value has the keys of the v1 AdmissionRequest's JSON: uid, kind,
// resource, subResource (only for a subresource), requestKind,
// requestResource, requestSubResource (only for a subresource), name and
// namespace (when not empty), operation, userInfo, object, oldObject (null
// when absent, as on the wire), dryRun (always present) and options. Then
// what Gatekeeper changes before its policies see the request:
//
//   - DELETE: object is a copy of oldObject (Gatekeeper's SetObjectOnDelete,
//     pkg/util/request_validation.go, called from Handle in
//     pkg/webhook/policy.go), so policies that read input.review.object see
//     the object being deleted. A DELETE without oldObject is an error, as
//     Gatekeeper denies it.
//   - A Namespace (core group) request has namespace "" (createReviewForRequest
//     in pkg/webhook/policy.go: server-side apply sets it to the name).
//
// The Namespace object is not part of it; see WithNamespace.
//
// Values are map[string]any, []any, string, float64, bool and nil: the
// request is marshalled to JSON and decoded with encoding/json into
// map[string]any, which is exactly what Gatekeeper's Rego driver does with
// the review before handing it to OPA (toInterfaceMap in the frameworks'
// constraint/pkg/client/drivers/rego/driver.go). Numbers are therefore
// float64 there too, and integers beyond 2^53 lose precision the same way
// in both, so a policy comparing numbers decides as it does under Gatekeeper.
//
// The uid is a fresh UUID for every call: admission.Attributes has no
// request UID, and the API server makes a new one for each webhook call
// (request.CreateAdmissionObjects).
func Review(attrs admission.Attributes, o admission.ObjectInterfaces) (map[string]any, error) {
	review, _, err := newReview(attrs, o)
	return review, err
}

// newReview is Review, and the request as K8sNativeValidation templates
// see it (Target.Attributes): the versioned attributes the review was built
// from, with the namespace of a Namespace request cleared as in the review.
// Gatekeeper's CEL driver gets the same request (RequestToVersionedAttributes
// in pkg/drivers/k8scel/transform), with no object on DELETE, as upstream's
// ValidatingAdmissionPolicy has it.
func newReview(attrs admission.Attributes, o admission.ObjectInterfaces) (map[string]any, *admission.VersionedAttributes, error) {
	req, versioned, err := admissionRequest(attrs, o)
	if err != nil {
		return nil, nil, err
	}

	if req.Operation == admissionv1.Delete {
		if req.OldObject.Object == nil && req.OldObject.Raw == nil {
			return nil, nil, errDeleteWithoutOldObject
		}
		req.Object = req.OldObject
	}
	if req.Kind.Group == "" && req.Kind.Kind == "Namespace" && req.Namespace != "" {
		req.Namespace = ""
		cleared := *versioned
		cleared.Attributes = withoutNamespace{versioned.Attributes}
		versioned = &cleared
	}

	review, err := requestToReview(req)
	if err != nil {
		return nil, nil, err
	}
	return review, versioned, nil
}

// withoutNamespace is a Namespace request with its namespace cleared.
type withoutNamespace struct{ admission.Attributes }

func (withoutNamespace) GetNamespace() string { return "" }

// requestToReview turns an AdmissionRequest into the generic value Rego
// sees, through JSON as Gatekeeper's Rego driver does (numbers float64).
func requestToReview(req *admissionv1.AdmissionRequest) (map[string]any, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encoding the admission request: %w", err)
	}
	var review map[string]any
	if err := json.Unmarshal(data, &review); err != nil {
		return nil, fmt.Errorf("decoding the admission request: %w", err)
	}
	return review, nil
}

// admissionRequest is the v1 AdmissionRequest the API server would send a
// webhook that matches the request's own group, version and resource.
func admissionRequest(attrs admission.Attributes, o admission.ObjectInterfaces) (*admissionv1.AdmissionRequest, *admission.VersionedAttributes, error) {
	invocation := &generic.WebhookInvocation{
		// Webhook is not read when the request is built.
		Resource:    attrs.GetResource(),
		Subresource: attrs.GetSubresource(),
		Kind:        attrs.GetKind(),
	}
	versioned, err := admission.NewVersionedAttributes(attrs, invocation.Kind, o)
	if err != nil {
		return nil, nil, fmt.Errorf("converting the request's objects to %s: %w", invocation.Kind, err)
	}
	review := request.CreateV1AdmissionReview(types.UID(uuid.NewUUID()), versioned, invocation)
	req := review.Request
	req.Options.Object = typedOptions(req.Options.Object)
	return req, versioned, nil
}

// typedOptions returns options with apiVersion and kind set. The API
// server's handlers set them on the options they pass to admission, so a
// webhook sees "kind": "CreateOptions" and so on; attributes built
// elsewhere (tests, other callers) may not have done so.
func typedOptions(options runtime.Object) runtime.Object {
	if options == nil || !options.GetObjectKind().GroupVersionKind().Empty() {
		return options
	}
	var kind string
	switch options.(type) {
	case *metav1.CreateOptions:
		kind = "CreateOptions"
	case *metav1.UpdateOptions:
		kind = "UpdateOptions"
	case *metav1.DeleteOptions:
		kind = "DeleteOptions"
	case *metav1.PatchOptions:
		kind = "PatchOptions"
	default:
		return options
	}
	options = options.DeepCopyObject()
	options.GetObjectKind().SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind(kind))
	return options
}

// WithNamespace adds what Gatekeeper adds when it knows the request's
// Namespace object: input.review.namespaceObject, the Namespace as JSON
// (apiVersion, kind, metadata, spec, status). Gatekeeper's webhook looks the
// Namespace up for every request with a namespace (createReviewForRequest
// in pkg/webhook/policy.go; not for a Namespace itself, whose namespace it
// clears) and passes it with reviews.Namespace (pkg/util/namespace.go,
// NamespaceToMap: "Rego policies ... access input.review.namespaceObject").
// ns is stored as given, not copied; nil adds nothing.
//
// Older Gatekeeper releases exposed the Namespace as
// input.review._unstable.namespace (pkg/target/target.go, gkReview.Unstable);
// current ones do not, so neither does this.
func WithNamespace(review map[string]any, ns map[string]any) {
	if review == nil || ns == nil {
		return
	}
	review["namespaceObject"] = ns
}

// RequestReview builds the review and the target of an AdmissionRequest
// given as is, as gator reviews an AdmissionReview test object: Review's
// changes to the request (DELETE, Namespace requests) are made here too,
// and K8sNativeValidation templates see the request as Gatekeeper's CEL
// driver rebuilds it from the AdmissionRequest. ns is the request's
// Namespace object, if known.
func RequestReview(req *admissionv1.AdmissionRequest, ns map[string]any) (map[string]any, *Target, error) {
	decode := func(raw runtime.RawExtension, what string) (*unstructured.Unstructured, error) {
		if len(raw.Raw) == 0 {
			return nil, nil
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw.Raw); err != nil {
			return nil, fmt.Errorf("request.%s: %w", what, err)
		}
		return u, nil
	}
	obj, err := decode(req.Object, "object")
	if err != nil {
		return nil, nil, err
	}
	old, err := decode(req.OldObject, "oldObject")
	if err != nil {
		return nil, nil, err
	}
	if obj == nil && old == nil {
		return nil, nil, errors.New(`the AdmissionRequest has no "object" or "oldObject" to review`)
	}
	r := req.DeepCopy()
	if r.Operation == admissionv1.Delete {
		if old == nil {
			return nil, nil, errDeleteWithoutOldObject
		}
		r.Object = r.OldObject
	}
	gvk := schema.GroupVersionKind{Group: req.Kind.Group, Version: req.Kind.Version, Kind: req.Kind.Kind}
	if isNamespaceKind(gvk) {
		r.Namespace = ""
	}
	review, err := requestToReview(r)
	if err != nil {
		return nil, nil, err
	}
	if r.Namespace != "" {
		WithNamespace(review, ns)
	}

	var options runtime.Object
	if len(req.Options.Raw) > 0 {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(req.Options.Raw); err == nil {
			options = u
		}
	}
	userInfo := &user.DefaultInfo{Name: req.UserInfo.Username, UID: req.UserInfo.UID, Groups: req.UserInfo.Groups}
	if len(req.UserInfo.Extra) > 0 {
		userInfo.Extra = map[string][]string{}
		for k, v := range req.UserInfo.Extra {
			userInfo.Extra[k] = v
		}
	}
	gvr := schema.GroupVersionResource{Group: req.Resource.Group, Version: req.Resource.Version, Resource: req.Resource.Resource}
	var celObj runtime.Object
	if obj != nil && req.Operation != admissionv1.Delete {
		celObj = obj
	}
	var celOld runtime.Object
	if old != nil {
		celOld = old
	}
	attrs := admission.NewAttributesRecord(celObj, celOld, gvk, r.Namespace, req.Name, gvr, req.SubResource,
		admission.Operation(req.Operation), options, req.DryRun != nil && *req.DryRun, userInfo)
	target := &Target{
		GVK:        gvk,
		Namespace:  r.Namespace,
		Name:       req.Name,
		Attributes: &admission.VersionedAttributes{Attributes: attrs, VersionedKind: gvk, VersionedObject: admission.NewLazyObject(celObj), VersionedOldObject: admission.NewLazyObject(celOld)},
	}
	target.Object, _ = review["object"].(map[string]any)
	target.OldObject, _ = review["oldObject"].(map[string]any)
	if isNamespaceKind(gvk) {
		target.NamespaceObject = target.Object
		if target.NamespaceObject == nil {
			target.NamespaceObject = target.OldObject
		}
	} else if r.Namespace != "" {
		target.NamespaceObject = ns
	}
	return review, target, nil
}
