package main

import (
	"encoding/json"
	"net/http"
	"strings"
)

// providerRequest and providerResponse are Gatekeeper's external data
// wire format (externaldata.gatekeeper.sh/v1beta1).
type providerRequest struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    struct {
		Keys []string `json:"keys"`
	} `json:"request"`
}

type providerResponse struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Response   response `json:"response"`
}

type response struct {
	Idempotent  bool   `json:"idempotent"`
	Items       []item `json:"items,omitempty"`
	SystemError string `json:"systemError,omitempty"`
}

type item struct {
	Key   string `json:"key"`
	Value any    `json:"value,omitempty"`
	Error string `json:"error,omitempty"`
}

// registry is what the provider knows: which images are signed, and the
// digest each tag stands for. A real provider asks a registry.
type registry struct {
	// digests maps an image reference (repository:tag) to its digest.
	digests map[string]string
	// signed are the image references, by tag or by digest, that carry
	// a valid signature.
	signed map[string]bool
}

// pin answers each key (an image by tag) with the image by digest, as an
// Assign's assign.externalData expects: a string value, or an error.
func (r *registry) pin(keys []string) response {
	out := response{Idempotent: true}
	for _, k := range keys {
		repo, _, _ := strings.Cut(k, ":")
		if d, ok := r.digests[k]; ok {
			out.Items = append(out.Items, item{Key: k, Value: repo + "@" + d})
		} else {
			out.Items = append(out.Items, item{Key: k, Error: "unknown tag"})
		}
	}
	return out
}

// verify answers each key (an image) with "signed", or the error a
// template reports.
func (r *registry) verify(keys []string) response {
	out := response{Idempotent: true}
	for _, k := range keys {
		if r.signed[k] {
			out.Items = append(out.Items, item{Key: k, Value: "signed"})
		} else {
			out.Items = append(out.Items, item{Key: k, Error: "image is not signed"})
		}
	}
	return out
}

// handler serves /pin and /verify. Gatekeeper (and Gatehouse) POST a
// ProviderRequest and read the ProviderResponse whatever the HTTP status.
func (r *registry) handler() http.Handler {
	mux := http.NewServeMux()
	serve := func(answer func([]string) response) http.HandlerFunc {
		return func(w http.ResponseWriter, req *http.Request) {
			var in providerRequest
			if err := json.NewDecoder(req.Body).Decode(&in); err != nil || in.Kind != "ProviderRequest" {
				w.WriteHeader(http.StatusBadRequest)
				json.NewEncoder(w).Encode(providerResponse{APIVersion: "externaldata.gatekeeper.sh/v1beta1", Kind: "ProviderResponse",
					Response: response{SystemError: "not a ProviderRequest"}})
				return
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(providerResponse{APIVersion: "externaldata.gatekeeper.sh/v1beta1", Kind: "ProviderResponse", Response: answer(in.Request.Keys)})
		}
	}
	mux.HandleFunc("POST /pin", serve(r.pin))
	mux.HandleFunc("POST /verify", serve(r.verify))
	return mux
}
