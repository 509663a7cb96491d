package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

func ask(t *testing.T, srv *httptest.Server, path, body string) (int, providerResponse) {
	t.Helper()
	resp, err := srv.Client().Post(srv.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out providerResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

func TestProvider(t *testing.T) {
	reg := &registry{
		digests: map[string]string{"r.example/a:1": "sha256:aa"},
		signed:  map[string]bool{"r.example/a@sha256:aa": true},
	}
	srv := httptest.NewTLSServer(reg.handler())
	defer srv.Close()

	code, got := ask(t, srv, "/pin", `{"apiVersion":"externaldata.gatekeeper.sh/v1beta1","kind":"ProviderRequest","request":{"keys":["r.example/a:1","r.example/b:2"]}}`)
	want := response{Idempotent: true, Items: []item{{Key: "r.example/a:1", Value: "r.example/a@sha256:aa"}, {Key: "r.example/b:2", Error: "unknown tag"}}}
	if code != http.StatusOK || got.Kind != "ProviderResponse" || !reflect.DeepEqual(got.Response, want) {
		t.Errorf("/pin: %d %+v, want %+v", code, got, want)
	}
	_, got = ask(t, srv, "/verify", `{"kind":"ProviderRequest","request":{"keys":["r.example/a@sha256:aa","r.example/a:1"]}}`)
	want = response{Idempotent: true, Items: []item{{Key: "r.example/a@sha256:aa", Value: "signed"}, {Key: "r.example/a:1", Error: "image is not signed"}}}
	if !reflect.DeepEqual(got.Response, want) {
		t.Errorf("/verify: %+v, want %+v", got.Response, want)
	}
	code, got = ask(t, srv, "/verify", `{"kind":"AdmissionReview"}`)
	if code != http.StatusBadRequest || got.Response.SystemError == "" {
		t.Errorf("not a ProviderRequest: %d %+v", code, got)
	}
}
