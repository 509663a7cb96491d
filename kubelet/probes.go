package kubelet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	v1 "k8s.io/api/core/v1"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	internalapi "k8s.io/cri-api/pkg/apis"
	"k8s.io/kubernetes/pkg/features"
	"k8s.io/kubernetes/pkg/kubelet/events"
	"k8s.io/kubernetes/pkg/probe"
	execprobe "k8s.io/kubernetes/pkg/probe/exec"
	grpcprobe "k8s.io/kubernetes/pkg/probe/grpc"
	httpprobe "k8s.io/kubernetes/pkg/probe/http"
	tcpprobe "k8s.io/kubernetes/pkg/probe/tcp"
	"k8s.io/kubernetes/third_party/forked/golang/expansion"
	"k8s.io/utils/exec"

	"github.com/gatehouse-dev/gatehouse/kubelet/simulated"
)

// This file runs one probe, as upstream's kubelet/prober/prober.go does,
// with upstream's probers (k8s.io/kubernetes/pkg/probe/...) as libraries;
// prober.go schedules probes and keeps their results.

// probeKind is liveness, readiness or startup.
type probeKind int

const (
	liveness probeKind = iota
	readiness
	startup
)

var probeKinds = []probeKind{liveness, readiness, startup}

// String is upstream's name of the kind, as probe events show it
// ("Liveness probe failed: ...").
func (k probeKind) String() string {
	switch k {
	case liveness:
		return "Liveness"
	case readiness:
		return "Readiness"
	case startup:
		return "Startup"
	}
	return "Unknown"
}

func (k probeKind) spec(c *v1.Container) *v1.Probe {
	switch k {
	case liveness:
		return c.LivenessProbe
	case readiness:
		return c.ReadinessProbe
	case startup:
		return c.StartupProbe
	}
	return nil
}

// maxProbeRetries is how often a probe that errors (not one that fails)
// is tried before its error counts, as upstream.
const maxProbeRetries = 3

// prober runs probes against a pod's containers.
type prober struct {
	agent *Agent
	exec  execprobe.Prober
	http  httpprobe.Prober
	tcp   tcpprobe.Prober
	grpc  grpcprobe.Prober
	// noNetwork, when set, is why network probes cannot be sent (the
	// simulated runtime has no pod network): they count as passing.
	noNetwork string
}

func newProber(a *Agent, noNetwork string) *prober {
	return &prober{
		agent: a, noNetwork: noNetwork,
		exec: execprobe.New(),
		// Redirects to other hosts are not followed, as upstream.
		http: httpprobe.New(false),
		tcp:  tcpprobe.New(),
		grpc: grpcprobe.New(),
	}
}

// noPodNetwork is why network probes and httpGet hooks cannot reach the
// pods of a runtime, or "" when they can: the simulated runtime's pod IPs
// are addresses only.
func noPodNetwork(rt internalapi.RuntimeService) string {
	if _, ok := rt.(*simulated.Runtime); ok {
		return "the node's runtime is simulated and has no pod network"
	}
	return ""
}

// probe runs the kind's probe of c once (with retries on errors) and says
// whether it passed; an error means no result (the worker ignores it).
// Failures and errors give upstream's Unhealthy events.
func (p *prober) probe(ctx context.Context, kind probeKind, pod *v1.Pod, status *v1.PodStatus, c *v1.Container, containerID string) (bool, error) {
	spec := kind.spec(c)
	if spec == nil {
		return true, nil
	}
	var result probe.Result
	var output string
	var err error
	for range maxProbeRetries {
		result, output, err = p.runProbe(ctx, kind, spec, pod, status, c, containerID)
		if err == nil {
			break
		}
	}
	a := p.agent
	if err != nil {
		a.event(pod, v1.EventTypeWarning, events.ContainerUnhealthy, "%s probe errored and resulted in %s state: %s", kind, result, err)
		return false, err
	}
	switch result {
	case probe.Success:
		return true, nil
	case probe.Warning:
		a.event(pod, v1.EventTypeWarning, events.ContainerProbeWarning, "%s probe warning: %s", kind, output)
		return true, nil
	case probe.Failure:
		a.event(pod, v1.EventTypeWarning, events.ContainerUnhealthy, "%s probe failed: %s", kind, output)
	}
	return false, nil
}

// networkSkipped: the probe goes over the network, which the runtime does
// not have; it counts as passing (the worker says so once in an event).
func (p *prober) networkSkipped(spec *v1.Probe) bool {
	return spec.Exec == nil && p.noNetwork != ""
}

func (p *prober) runProbe(ctx context.Context, kind probeKind, spec *v1.Probe, pod *v1.Pod, status *v1.PodStatus, c *v1.Container, containerID string) (probe.Result, string, error) {
	timeout := time.Duration(spec.TimeoutSeconds) * time.Second
	if p.networkSkipped(spec) {
		return probe.Success, "", nil
	}
	switch {
	case spec.Exec != nil:
		// Only the container's literal env values expand: the probe runs
		// beside the container, not in its environment (upstream's
		// ExpandContainerCommandOnlyStatic).
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		mapping := expansion.MappingFuncFor(env)
		cmd := make([]string, len(spec.Exec.Command))
		for i, s := range spec.Exec.Command {
			cmd[i] = expansion.Expand(s, mapping)
		}
		return p.exec.Probe(&execInContainer{run: func() ([]byte, []byte, error) {
			return p.agent.runtime.ExecSync(ctx, containerID, cmd, timeout)
		}})
	case spec.HTTPGet != nil:
		req, err := httpprobe.NewRequestForHTTPGetAction(spec.HTTPGet, c, status.PodIP, "probe")
		if err != nil {
			return probe.Unknown, "", err
		}
		req = req.WithContext(ctx)
		if spec.HTTPGet.Protocol != nil && *spec.HTTPGet.Protocol == v1.HTTPProtocolHTTP2 && utilfeature.DefaultFeatureGate.Enabled(features.H2CContainerProbe) {
			return p.http.ProbeH2C(req, timeout)
		}
		return p.http.Probe(req, timeout)
	case spec.TCPSocket != nil:
		port, err := probe.ResolveContainerPort(spec.TCPSocket.Port, c)
		if err != nil {
			return probe.Unknown, "", err
		}
		host := spec.TCPSocket.Host
		if host == "" {
			host = status.PodIP
		}
		return p.tcp.Probe(host, port, timeout)
	case spec.GRPC != nil:
		service := ""
		if spec.GRPC.Service != nil {
			service = *spec.GRPC.Service
		}
		useTLS := utilfeature.DefaultFeatureGate.Enabled(features.GRPCContainerProbeTLS) && spec.GRPC.Mode != nil && *spec.GRPC.Mode == v1.GRPCProbeModeTLS
		return p.grpc.Probe(status.PodIP, service, int(spec.GRPC.Port), timeout, grpcprobe.ProbeOptions{UseTLS: useTLS})
	}
	return probe.Unknown, "", fmt.Errorf("missing probe handler for %s:%s", podDesc(pod), c.Name)
}

// execInContainer is the exec.Cmd upstream's exec prober runs: one CRI
// ExecSync. Output comes only once the command ends, so there are no
// pipes, and stdout and stderr go to one writer.
type execInContainer struct {
	run    func() (stdout, stderr []byte, err error)
	writer io.Writer
}

var _ exec.Cmd = (*execInContainer)(nil)

func (e *execInContainer) Start() error {
	stdout, stderr, err := e.run()
	if e.writer != nil {
		_, _ = e.writer.Write(append(stdout, stderr...))
	}
	return err
}

func (e *execInContainer) Run() error  { return e.Start() }
func (e *execInContainer) Wait() error { return nil }
func (e *execInContainer) CombinedOutput() ([]byte, error) {
	stdout, stderr, err := e.run()
	return append(stdout, stderr...), err
}
func (e *execInContainer) Output() ([]byte, error) {
	stdout, _, err := e.run()
	return stdout, err
}

// The command runs in the container as given: no directory, stdin or
// environment of the caller's applies, and it cannot be stopped early.
func (e *execInContainer) SetDir(string)           {}
func (e *execInContainer) SetStdin(io.Reader)      {}
func (e *execInContainer) SetEnv([]string)         {}
func (e *execInContainer) Stop()                   {}
func (e *execInContainer) SetStdout(out io.Writer) { e.writer = out }
func (e *execInContainer) SetStderr(out io.Writer) { e.writer = out }
func (e *execInContainer) StdoutPipe() (io.ReadCloser, error) {
	return nil, errors.New("exec in container: no pipes, ExecSync returns output when the command ends")
}
func (e *execInContainer) StderrPipe() (io.ReadCloser, error) { return e.StdoutPipe() }
