// Package node starts a node agent with its container runtime, as
// `gatehouse up` (a node next to the control plane) and `gatehouse node`
// (a node joining one) run it: it picks the runtime (--runtime auto, cri or
// simulated), starts containerd as a child when that is the choice, makes
// sure the pause image is there, waits for the Node's pod CIDR, and runs
// package kubelet's agent until the context ends.
//
// Usage:
//
//	n, err := node.Start(ctx, node.Options{
//		Name: "gatehouse", DataDir: dataDir, Client: client, Runtime: "auto",
//		Server: &kubelet.ServerConfig{...}, Logger: logger,
//	})
//	if err != nil { ... }
//	<-n.Ready()
//	...
//	err = n.Wait() // after ctx is done: the agent, then containerd, stopped
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"go.opentelemetry.io/otel/trace/noop"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	internalapi "k8s.io/cri-api/pkg/apis"
	criclient "k8s.io/cri-client/pkg"

	"github.com/gatehouse-dev/gatehouse/config"
	"github.com/gatehouse-dev/gatehouse/kubelet"
	"github.com/gatehouse-dev/gatehouse/kubelet/containerd"
	"github.com/gatehouse-dev/gatehouse/kubelet/images"
	"github.com/gatehouse-dev/gatehouse/kubelet/services"
	"github.com/gatehouse-dev/gatehouse/kubelet/simulated"
)

// Options configure a node.
type Options struct {
	Name    string
	DataDir string
	// Client is authenticated as system:node:<Name>.
	Client kubernetes.Interface
	// Runtime is auto, cri or simulated; Endpoint a CRI endpoint to use
	// instead of starting containerd.
	Runtime, Endpoint string
	NodeIP            net.IP
	// MaxPods is the Node's pods capacity; 0 means upstream's 110.
	MaxPods int
	Server  *kubelet.ServerConfig
	Version string
	Logger  *slog.Logger
	// Notice receives the one line saying why the simulated runtime was
	// chosen under auto.
	Notice func(string)
}

// Node is a running node agent and its runtime.
type Node struct {
	// RuntimeName says which runtime runs the pods: "containerd (child)",
	// "cri <endpoint>" or "simulated".
	RuntimeName string
	agent       *kubelet.Agent
	containerd  *containerd.Process
	services    *services.Services
	done        chan struct{}
	err         error
}

// Start picks and starts the runtime and the agent; the agent runs until
// ctx is done.
func Start(ctx context.Context, opts Options) (*Node, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	podCIDR, err := waitForPodCIDR(ctx, opts.Client, opts.Name)
	if err != nil {
		return nil, err
	}
	if _, ipnet, err := net.ParseCIDR(podCIDR); err == nil && opts.MaxPods > 0 {
		if ones, bits := ipnet.Mask.Size(); bits-ones < 31 && opts.MaxPods > (1<<(bits-ones))-3 {
			opts.Logger.Warn("more pods allowed than the node's pod CIDR has addresses: pods past that wait in ContainerCreating",
				"maxPods", opts.MaxPods, "podCIDR", podCIDR, "addresses", (1<<(bits-ones))-3)
		}
	}
	n := &Node{done: make(chan struct{})}
	var runtime internalapi.RuntimeService
	var imageService internalapi.ImageManagerService
	endpoint := opts.Endpoint
	switch opts.Runtime {
	case config.RuntimeSimulated:
	case config.RuntimeAuto, config.RuntimeCRI, "":
		if endpoint != "" {
			n.RuntimeName = "cri " + endpoint
			break
		}
		_, err := containerd.Detect()
		if err == nil && os.Geteuid() != 0 {
			err = errors.New("containerd runs pods as root only, and gatehouse runs as an unprivileged user")
		}
		if err != nil {
			if opts.Runtime == config.RuntimeCRI {
				return nil, fmt.Errorf("--runtime cri: no --container-runtime-endpoint and %w", err)
			}
			if opts.Notice != nil {
				opts.Notice(fmt.Sprintf("node runtime: simulated (pods go through their states without containers): %v", err))
			}
			break
		}
		p, err := containerd.Start(ctx, containerd.Config{DataDir: opts.DataDir, PodCIDR: podCIDR, Logger: opts.Logger})
		if err != nil {
			return nil, fmt.Errorf("starting containerd: %w", err)
		}
		n.containerd, endpoint, n.RuntimeName = p, p.Endpoint, "containerd "+p.Version+" (child of gatehouse)"
		if _, _, err := images.EnsurePause(ctx, endpoint); err != nil {
			_ = p.Stop()
			return nil, fmt.Errorf("importing the pause image: %w", err)
		}
	default:
		return nil, fmt.Errorf("--runtime %q: must be one of auto, cri, simulated", opts.Runtime)
	}
	if endpoint != "" {
		tp := noop.NewTracerProvider()
		if runtime, err = criclient.NewRemoteRuntimeService(ctx, endpoint, 2*time.Minute, tp, false); err == nil {
			imageService, err = criclient.NewRemoteImageService(ctx, endpoint, 2*time.Minute, tp, false)
		}
		if err != nil {
			n.stopContainerd()
			return nil, fmt.Errorf("CRI endpoint %s: %w", endpoint, err)
		}
	} else {
		sim := simulated.New(simulated.Options{PodCIDR: podCIDR})
		runtime, imageService, n.RuntimeName = sim, sim, "simulated"
	}
	// Services and cluster DNS only on the network Gatehouse made (its
	// containerd's bridge): the simulated runtime has none, and another
	// runtime's CNI is not known.
	if n.containerd != nil {
		n.services, err = services.Start(ctx, services.Config{NodeName: opts.Name, Client: opts.Client, PodCIDR: podCIDR,
			StateDir: filepath.Join(opts.DataDir, "services"), Logger: opts.Logger})
		if err != nil {
			opts.Logger.Warn("Services are not routed on this node", "err", err)
			if opts.Notice != nil {
				opts.Notice(fmt.Sprintf("node services: not routed, no cluster DNS: %v", err))
			}
		}
	}
	n.agent, err = kubelet.New(kubelet.Config{
		NodeName: opts.Name, Client: opts.Client, Runtime: runtime, Images: imageService,
		DataDir: filepath.Join(opts.DataDir, "kubelet"), PodCIDR: podCIDR, NodeIP: opts.NodeIP,
		Server: opts.Server, Version: opts.Version, Logger: opts.Logger, MaxPods: opts.MaxPods,
		ClusterDNS: n.services.ClusterDNS(),
	})
	if err != nil {
		n.stopServices(opts.Logger)
		n.stopContainerd()
		return nil, err
	}
	go func() {
		defer close(n.done)
		n.err = n.agent.Run(ctx)
		n.stopServices(opts.Logger)
		n.stopContainerd()
	}()
	return n, nil
}

// Ready is closed when the Node is registered and its pods are synced.
func (n *Node) Ready() <-chan struct{} { return n.agent.Ready() }

// Done is closed when the agent and its runtime have stopped.
func (n *Node) Done() <-chan struct{} { return n.done }

// Wait waits for the agent and the runtime to stop and returns the
// agent's error.
func (n *Node) Wait() error {
	<-n.done
	return n.err
}

// stopServices deletes the node's Service rules and restores the kernel
// settings they needed.
func (n *Node) stopServices(logger *slog.Logger) {
	if err := n.services.Stop(); err != nil {
		logger.Error("stopping node services", "err", err)
	}
}

func (n *Node) stopContainerd() {
	if n.containerd != nil {
		_ = n.containerd.Stop()
	}
}

// waitForPodCIDR makes sure the Node exists and waits for the
// controller-manager's node IPAM to give it a pod CIDR, which the CNI
// configuration needs before containerd starts.
func waitForPodCIDR(ctx context.Context, client kubernetes.Interface, name string) (string, error) {
	_, err := client.CoreV1().Nodes().Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("registering node %s: %w", name, err)
	}
	var cidr string
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		node, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		cidr = node.Spec.PodCIDR
		return cidr != "", nil
	})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return "", err
		}
		return "", fmt.Errorf("node %s has no pod CIDR after a minute: is the controller-manager running with --allocate-node-cidrs? (%w)", name, err)
	}
	return cidr, nil
}
