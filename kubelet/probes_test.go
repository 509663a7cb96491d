package kubelet

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/record"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/ptr"

	"github.com/gatehouse-dev/gatehouse/kubelet/simulated"
)

// testAgent is an agent on the simulated runtime with one running
// container ("c", annotations as given on the pod), whose events a fake
// recorder keeps; the prober sends network probes (to loopback).
func testAgent(t *testing.T, podAnn map[string]string) (*Agent, *record.FakeRecorder, string) {
	t.Helper()
	ctx := context.Background()
	rt := simulated.New(simulated.Options{PodCIDR: "10.99.0.0/24"})
	t.Cleanup(func() { _ = rt.Close(ctx) })
	sb := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u1"},
		LogDirectory: t.TempDir(), Annotations: podAnn,
	}
	sandboxID, err := rt.RunPodSandbox(ctx, sb, "")
	if err != nil {
		t.Fatal(err)
	}
	ref, err := rt.PullImage(ctx, &runtimeapi.ImageSpec{Image: "busybox"}, nil, sb)
	if err != nil {
		t.Fatal(err)
	}
	id, err := rt.CreateContainer(ctx, sandboxID, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: &runtimeapi.ImageSpec{Image: ref}, LogPath: "c/0.log",
	}, sb)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	rec := record.NewFakeRecorder(100)
	a := &Agent{runtime: rt, recorder: rec, logger: slog.New(slog.DiscardHandler)}
	a.prober = newProber(a, "")
	return a, rec, id
}

func drain(rec *record.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func TestProberHandlers(t *testing.T) {
	// An HTTP server with a healthy and a failing path, checking headers.
	var gotHeader, gotAgent string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			gotHeader, gotAgent = r.Header.Get("X-Probe"), r.Header.Get("User-Agent")
			_, _ = io.WriteString(w, "ok")
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	_, portText, _ := net.SplitHostPort(srv.Listener.Addr().String())
	httpPort, _ := strconv.Atoi(portText)

	// A gRPC health server.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("down", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()
	grpcPort := int32(lis.Addr().(*net.TCPAddr).Port)

	// A closed port.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	container := &v1.Container{Name: "c", Ports: []v1.ContainerPort{{Name: "web", ContainerPort: int32(httpPort)}},
		Env: []v1.EnvVar{{Name: "FILE", Value: "/tmp/ready"}}}
	status := &v1.PodStatus{PodIP: "127.0.0.1"}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1"}}
	for _, tc := range []struct {
		name      string
		podAnn    map[string]string
		handler   v1.ProbeHandler
		pass      bool
		wantEvent string
	}{
		{name: "exec passes", handler: v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{"cat", "$(FILE)"}}}, pass: true},
		{name: "exec fails", podAnn: map[string]string{simulated.AnnotationExecExitCode: "1"},
			handler:   v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{"cat", "$(FILE)"}}},
			wantEvent: "Warning Unhealthy Liveness probe failed: simulated exec exit code 1"},
		{name: "httpGet by port name, with a header", handler: v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("web"),
			HTTPHeaders: []v1.HTTPHeader{{Name: "X-Probe", Value: "yes"}}}}, pass: true},
		{name: "httpGet 500", handler: v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/broken", Port: intstr.FromInt32(int32(httpPort))}},
			wantEvent: "Warning Unhealthy Liveness probe failed: HTTP probe failed with statuscode: 500"},
		{name: "httpGet unknown port name", handler: v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Port: intstr.FromString("nope")}},
			wantEvent: `Warning Unhealthy Liveness probe errored and resulted in unknown state: port "nope" not found`},
		{name: "tcpSocket open", handler: v1.ProbeHandler{TCPSocket: &v1.TCPSocketAction{Port: intstr.FromInt32(int32(httpPort))}}, pass: true},
		{name: "tcpSocket closed", handler: v1.ProbeHandler{TCPSocket: &v1.TCPSocketAction{Port: intstr.FromInt(closedPort)}},
			wantEvent: "Warning Unhealthy Liveness probe failed: dial tcp 127.0.0.1:" + strconv.Itoa(closedPort)},
		{name: "grpc serving", handler: v1.ProbeHandler{GRPC: &v1.GRPCAction{Port: grpcPort}}, pass: true},
		{name: "grpc not serving", handler: v1.ProbeHandler{GRPC: &v1.GRPCAction{Port: grpcPort, Service: ptr.To("down")}},
			wantEvent: `Warning Unhealthy Liveness probe failed: service unhealthy (responded with "NOT_SERVING")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, rec, id := testAgent(t, tc.podAnn)
			c := container.DeepCopy()
			c.LivenessProbe = withProbeDefaults(&v1.Probe{ProbeHandler: tc.handler})
			pass, _ := a.prober.probe(context.Background(), liveness, pod, status, c, id)
			if pass != tc.pass {
				t.Errorf("passed %v, want %v", pass, tc.pass)
			}
			events := drain(rec)
			if tc.wantEvent == "" && len(events) > 0 {
				t.Errorf("events %q, want none", events)
			}
			if tc.wantEvent != "" && (len(events) != 1 || !strings.HasPrefix(events[0], tc.wantEvent)) {
				t.Errorf("events %q, want one starting %q", events, tc.wantEvent)
			}
		})
	}
	if gotHeader != "yes" || !strings.HasPrefix(gotAgent, "kube-probe/") {
		t.Errorf("HTTP probe headers: X-Probe %q, User-Agent %q", gotHeader, gotAgent)
	}
}

func TestNoPodNetwork(t *testing.T) {
	rt := simulated.New(simulated.Options{PodCIDR: "10.99.0.0/24"})
	defer rt.Close(context.Background())
	if noPodNetwork(rt) == "" {
		t.Error("the simulated runtime has a pod network")
	}
	p := newProber(nil, noPodNetwork(rt))
	if !p.networkSkipped(&v1.Probe{ProbeHandler: v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{}}}) || p.networkSkipped(&v1.Probe{ProbeHandler: v1.ProbeHandler{Exec: &v1.ExecAction{}}}) {
		t.Error("on the simulated runtime, network probes must be skipped and exec probes run")
	}
}
