package kubelet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/apiserver/pkg/server/options"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	crilogs "k8s.io/cri-client/pkg/logs"
)

// ServerConfig is the kubelet API's listener: TLS with a serving
// certificate from the cluster's CA, clients authenticated by a
// certificate of ClientCAFile or a bearer token (TokenReview), and
// authorized by SubjectAccessReview, as upstream's kubelet with webhook
// authentication and authorization.
type ServerConfig struct {
	Address           string
	Port              int
	CertFile, KeyFile string
	ClientCAFile      string
}

type server struct {
	agent  *Agent
	cfg    ServerConfig
	authn  authenticator.Request
	authz  authorizer.Authorizer
	caFile *dynamiccertificates.DynamicFileCAContent
}

func (a *Agent) newServer(cfg ServerConfig) (*server, error) {
	ca, err := dynamiccertificates.NewDynamicCAContentFromFile("client-ca-bundle", cfg.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("kubelet API client CA %s: %w", cfg.ClientCAFile, err)
	}
	authn, _, err := authenticatorfactory.DelegatingAuthenticatorConfig{
		Anonymous:                          &apiserver.AnonymousAuthConfig{Enabled: false},
		CacheTTL:                           2 * time.Minute,
		TokenAccessReviewClient:            a.client.AuthenticationV1(),
		TokenAccessReviewTimeout:           10 * time.Second,
		WebhookRetryBackoff:                options.DefaultAuthWebhookRetryBackoff(),
		ClientCertificateCAContentProvider: ca,
	}.New()
	if err != nil {
		return nil, fmt.Errorf("kubelet API authentication: %w", err)
	}
	authz, err := authorizerfactory.DelegatingAuthorizerConfig{
		SubjectAccessReviewClient: a.client.AuthorizationV1(),
		AllowCacheTTL:             5 * time.Minute,
		DenyCacheTTL:              30 * time.Second,
		WebhookRetryBackoff:       options.DefaultAuthWebhookRetryBackoff(),
	}.New()
	if err != nil {
		return nil, fmt.Errorf("kubelet API authorization: %w", err)
	}
	return &server{agent: a, cfg: cfg, authn: authn, authz: authz, caFile: ca}, nil
}

func (s *server) run(ctx context.Context) error {
	cert, err := tls.LoadX509KeyPair(s.cfg.CertFile, s.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("kubelet API serving certificate: %w", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(s.cfg.Address, strconv.Itoa(s.cfg.Port)))
	if err != nil {
		return fmt.Errorf("kubelet API: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", s.containerLogs)
	s.routeStreaming(mux)
	s.routeStats(mux)
	srv := &http.Server{
		Handler: s.authenticated(mux),
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequestClientCert,
			MinVersion:   tls.VersionTLS12,
		},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go s.caFile.Run(ctx, 1)
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("kubelet API: %w", err)
	}
	return nil
}

// authenticated authenticates and authorizes each request as upstream's
// kubelet does: verb from the method, resource nodes, subresource from the
// path (log for /logs, stats, metrics, healthz, proxy for the rest, which
// covers containerLogs).
func (s *server) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, ok, err := s.authn.AuthenticateRequest(r)
		if err != nil || !ok {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		verb := map[string]string{http.MethodGet: "get", http.MethodPost: "create", http.MethodPut: "update", http.MethodPatch: "patch", http.MethodDelete: "delete", http.MethodHead: "get"}[r.Method]
		sub := "proxy"
		for prefix, name := range map[string]string{"/logs": "log", "/stats": "stats", "/metrics": "metrics", "/healthz": "healthz", "/spec": "spec", "/checkpoint": "checkpoint", "/configz": "configz"} {
			if r.URL.Path == prefix || strings.HasPrefix(r.URL.Path, prefix+"/") {
				sub = name
			}
		}
		attrs := authorizer.AttributesRecord{
			User: resp.User, Verb: verb, Namespace: "", APIGroup: "", APIVersion: "v1",
			Resource: "nodes", Subresource: sub, Name: s.agent.cfg.NodeName, ResourceRequest: true, Path: r.URL.Path,
		}
		decision, reason, err := s.authz.Authorize(r.Context(), attrs)
		if err != nil || decision != authorizer.DecisionAllow {
			msg := fmt.Sprintf("Forbidden (user=%s, verb=%s, resource=nodes, subresource=%s)", resp.User.GetName(), verb, sub)
			if reason != "" {
				msg += ": " + reason
			}
			http.Error(w, msg, http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// containerLogs serves a container's log as kubectl logs asks for it:
// follow, previous, tailLines, sinceSeconds, sinceTime, timestamps,
// limitBytes — read with the CRI log reader upstream's kubelet uses.
func (s *server) containerLogs(w http.ResponseWriter, r *http.Request) {
	a := s.agent
	ns, name, container := r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("container")
	pod, err := a.pods.Pods(ns).Get(name)
	if err != nil {
		http.Error(w, fmt.Sprintf("pod %s/%s not found on node %s", ns, name, a.cfg.NodeName), http.StatusNotFound)
		return
	}
	if !hasContainer(pod, container) {
		http.Error(w, fmt.Sprintf("container %s is not valid for pod %s", container, name), http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	opts := &v1.PodLogOptions{Container: container, Follow: q.Get("follow") == "true", Previous: q.Get("previous") == "true", Timestamps: q.Get("timestamps") == "true"}
	for key, dst := range map[string]**int64{"tailLines": &opts.TailLines, "sinceSeconds": &opts.SinceSeconds, "limitBytes": &opts.LimitBytes} {
		if v := q.Get(key); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				http.Error(w, fmt.Sprintf("%s: %q is not a non-negative integer", key, v), http.StatusBadRequest)
				return
			}
			*dst = &n
		}
	}
	if v := q.Get("sinceTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			http.Error(w, fmt.Sprintf("sinceTime: %v", err), http.StatusBadRequest)
			return
		}
		opts.SinceTime = &metav1.Time{Time: t}
	}
	state, err := a.podState(r.Context(), pod.UID)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	instances := state.instances(container)
	index := 0
	if opts.Previous {
		index = 1
	}
	if len(instances) <= index {
		what := "container"
		if opts.Previous {
			what = "previous terminated container"
		}
		http.Error(w, fmt.Sprintf("%s %q in pod %q not found", what, container, name), http.StatusBadRequest)
		return
	}
	inst := instances[index]
	if inst.State == runtimeapi.ContainerState_CONTAINER_CREATED || inst.State == runtimeapi.ContainerState_CONTAINER_UNKNOWN {
		http.Error(w, fmt.Sprintf("container %q in pod %q is waiting to start", container, name), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Transfer-Encoding", "chunked")
	w.WriteHeader(http.StatusOK)
	out := &flushWriter{w: w}
	if f, ok := w.(http.Flusher); ok {
		out.flush = f.Flush
	}
	logOpts := &crilogs.LogOptions{TailLines: opts.TailLines, LimitBytes: opts.LimitBytes, Follow: opts.Follow, Timestamp: opts.Timestamps}
	switch {
	case opts.SinceSeconds != nil:
		logOpts.Since = time.Now().Add(-time.Duration(*opts.SinceSeconds) * time.Second)
	case opts.SinceTime != nil:
		logOpts.Since = opts.SinceTime.Time
	}
	_ = crilogs.ReadLogs(r.Context(), inst.LogPath, inst.Id, logOpts, a.runtime, out, out)
}

func hasContainer(pod *v1.Pod, name string) bool {
	for _, list := range [][]v1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			if c.Name == name {
				return true
			}
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == name {
			return true
		}
	}
	return false
}

// flushWriter flushes after each write, so followed logs arrive as they
// are written.
type flushWriter struct {
	w     http.ResponseWriter
	flush func()
}

func (f *flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if f.flush != nil {
		f.flush()
	}
	return n, err
}
