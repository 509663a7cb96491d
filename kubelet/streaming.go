package kubelet

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/proxy"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	remotecommandserver "k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// routeStreaming adds exec, attach, portForward and run to the kubelet
// API, with the paths (with and without the pod UID) and methods of
// upstream's kubelet server. The authorization filter maps them all to
// nodes/proxy, as upstream's does.
func (s *server) routeStreaming(mux *http.ServeMux) {
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		for _, path := range []string{"/{namespace}/{pod}/{container}", "/{namespace}/{pod}/{uid}/{container}"} {
			mux.HandleFunc(method+" /exec"+path, s.exec)
			mux.HandleFunc(method+" /attach"+path, s.attach)
		}
		mux.HandleFunc(method+" /portForward/{namespace}/{pod}", s.portForward)
		mux.HandleFunc(method+" /portForward/{namespace}/{pod}/{uid}", s.portForward)
	}
	mux.HandleFunc("POST /run/{namespace}/{pod}/{container}", s.runInContainer)
	mux.HandleFunc("POST /run/{namespace}/{pod}/{uid}/{container}", s.runInContainer)
}

// streamError is an error with the HTTP status the kubelet API answers it
// with.
type streamError struct {
	status int
	msg    string
}

func (e *streamError) Error() string { return e.msg }

func writeStreamError(w http.ResponseWriter, err error) {
	if se, ok := err.(*streamError); ok {
		http.Error(w, se.msg, se.status)
		return
	}
	// A runtime's refusal (the simulated runtime's Unimplemented, a
	// NotFound container): upstream's translation of gRPC codes.
	_ = streaming.WriteError(err, w)
}

// streamPod finds the pod named in the path on this node; with a UID in
// the path, it must be that pod.
func (s *server) streamPod(r *http.Request) (*v1.Pod, error) {
	ns, name, uid := r.PathValue("namespace"), r.PathValue("pod"), types.UID(r.PathValue("uid"))
	pod, err := s.agent.pods.Pods(ns).Get(name)
	if err != nil {
		return nil, &streamError{http.StatusNotFound, fmt.Sprintf("pod %s/%s not found on node %s", ns, name, s.agent.cfg.NodeName)}
	}
	if uid != "" && pod.UID != uid {
		return nil, &streamError{http.StatusNotFound, fmt.Sprintf("pod %s/%s with UID %s not found on node %s (the pod of that name has UID %s)", ns, name, uid, s.agent.cfg.NodeName, pod.UID)}
	}
	return pod, nil
}

// runningContainer is the ID of the running container of that name in
// the pod's current sandbox, as upstream's findContainer looks among the
// running pods.
func (s *server) runningContainer(ctx context.Context, pod *v1.Pod, name string) (string, error) {
	if !hasContainer(pod, name) {
		return "", &streamError{http.StatusNotFound, fmt.Sprintf("container %q not found in pod %s/%s", name, pod.Namespace, pod.Name)}
	}
	state, err := s.agent.podState(ctx, pod.UID)
	if err != nil {
		return "", &streamError{http.StatusInternalServerError, fmt.Sprintf("pod %s/%s: %v", pod.Namespace, pod.Name, err)}
	}
	sb := state.ready()
	if sb != nil {
		if c := state.latestIn(sb.Id, name); running(c) {
			return c.Id, nil
		}
	}
	return "", &streamError{http.StatusNotFound, fmt.Sprintf("container %q in pod %s/%s is not running on node %s", name, pod.Namespace, pod.Name, s.agent.cfg.NodeName)}
}

func (s *server) exec(w http.ResponseWriter, r *http.Request) {
	opts, err := remotecommandserver.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	pod, err := s.streamPod(r)
	if err != nil {
		writeStreamError(w, err)
		return
	}
	id, err := s.runningContainer(r.Context(), pod, r.PathValue("container"))
	if err != nil {
		writeStreamError(w, err)
		return
	}
	resp, err := s.agent.runtime.Exec(r.Context(), &runtimeapi.ExecRequest{
		ContainerId: id, Cmd: r.URL.Query()[v1.ExecCommandParam],
		Tty: opts.TTY, Stdin: opts.Stdin, Stdout: opts.Stdout, Stderr: opts.Stderr,
	})
	if err != nil {
		writeStreamError(w, err)
		return
	}
	s.proxyStream(w, r, resp.Url)
}

func (s *server) attach(w http.ResponseWriter, r *http.Request) {
	opts, err := remotecommandserver.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	pod, err := s.streamPod(r)
	if err != nil {
		writeStreamError(w, err)
		return
	}
	id, err := s.runningContainer(r.Context(), pod, r.PathValue("container"))
	if err != nil {
		writeStreamError(w, err)
		return
	}
	resp, err := s.agent.runtime.Attach(r.Context(), &runtimeapi.AttachRequest{
		ContainerId: id, Tty: opts.TTY, Stdin: opts.Stdin, Stdout: opts.Stdout, Stderr: opts.Stderr,
	})
	if err != nil {
		writeStreamError(w, err)
		return
	}
	s.proxyStream(w, r, resp.Url)
}

func (s *server) portForward(w http.ResponseWriter, r *http.Request) {
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	pod, err := s.streamPod(r)
	if err != nil {
		writeStreamError(w, err)
		return
	}
	state, err := s.agent.podState(r.Context(), pod.UID)
	if err != nil {
		writeStreamError(w, &streamError{http.StatusInternalServerError, fmt.Sprintf("pod %s/%s: %v", pod.Namespace, pod.Name, err)})
		return
	}
	sb := state.ready()
	if sb == nil {
		writeStreamError(w, &streamError{http.StatusNotFound, fmt.Sprintf("pod %s/%s has no running sandbox on node %s", pod.Namespace, pod.Name, s.agent.cfg.NodeName)})
		return
	}
	resp, err := s.agent.runtime.PortForward(r.Context(), &runtimeapi.PortForwardRequest{PodSandboxId: sb.Id, Port: opts.Ports})
	if err != nil {
		writeStreamError(w, err)
		return
	}
	s.proxyStream(w, r, resp.Url)
}

// runInContainer is upstream's /run: the command (space-separated in the
// cmd query parameter, for legacy reasons) runs to its end and its stdout
// then stderr are the response.
func (s *server) runInContainer(w http.ResponseWriter, r *http.Request) {
	pod, err := s.streamPod(r)
	if err != nil {
		writeStreamError(w, err)
		return
	}
	id, err := s.runningContainer(r.Context(), pod, r.PathValue("container"))
	if err != nil {
		writeStreamError(w, err)
		return
	}
	cmd := strings.Split(r.URL.Query().Get("cmd"), " ")
	stdout, stderr, err := s.agent.runtime.ExecSync(r.Context(), id, cmd, 0)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(stdout, stderr...))
}

// proxyStream hands the connection to the runtime's streaming server at
// the URL its Exec/Attach/PortForward returned, as upstream's kubelet does
// when it does not redirect clients there.
func (s *server) proxyStream(w http.ResponseWriter, r *http.Request, streamURL string) {
	u, err := url.Parse(streamURL)
	if err != nil {
		http.Error(w, fmt.Sprintf("runtime streaming URL %q: %v", streamURL, err), http.StatusInternalServerError)
		return
	}
	handler := proxy.NewUpgradeAwareHandler(u, nil /*transport*/, false /*wrapTransport*/, true /*upgradeRequired*/, &streamResponder{logger: s.agent.logger})
	handler.ServeHTTP(w, r)
}

type streamResponder struct{ logger *slog.Logger }

func (r *streamResponder) Error(w http.ResponseWriter, req *http.Request, err error) {
	r.logger.Error("proxying a stream to the runtime", "path", req.URL.Path, "err", err)
	http.Error(w, err.Error(), http.StatusInternalServerError)
}
