package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/component-base/version"

	"github.com/gatehouse-dev/gatehouse/config"
	"github.com/gatehouse-dev/gatehouse/controlplane"
	"github.com/gatehouse-dev/gatehouse/kubelet"
	"github.com/gatehouse-dev/gatehouse/kubelet/node"
)

// startLocalNode runs the node agent next to the control plane, as
// system:node:<hostname> with a client certificate from the cluster CA,
// and waits until the scheduler can place pods on it.
func startLocalNode(ctx context.Context, cfg *config.Config, cp *controlplane.ControlPlane, logger *slog.Logger, notice func(string)) (*node.Node, error) {
	name := nodeName()
	identity, err := cp.PKI.IssueClient("kubelet-client-"+name, "system:node:"+name, []string{"system:nodes"})
	if err != nil {
		return nil, fmt.Errorf("node identity: %w", err)
	}
	nodeIP := net.ParseIP(cfg.BindAddress)
	if nodeIP != nil && nodeIP.IsUnspecified() {
		nodeIP = nil // the host's address
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	if nodeIP != nil {
		ips = append(ips, nodeIP)
	}
	serving, err := cp.PKI.IssueServing("kubelet-serving-"+name, []string{name, "localhost"}, ips)
	if err != nil {
		return nil, fmt.Errorf("node serving certificate: %w", err)
	}
	restCfg := &rest.Config{Host: cp.Server, QPS: 50, Burst: 100, UserAgent: "gatehouse-node/" + name,
		TLSClientConfig: rest.TLSClientConfig{CAFile: cp.PKI.CA.CertFile, CertFile: identity.CertFile, KeyFile: identity.KeyFile}}
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, err
	}
	n, err := node.Start(ctx, node.Options{
		Name: name, DataDir: cfg.DataDir, Client: client, Runtime: cfg.Runtime, Endpoint: cfg.ContainerRuntimeEndpoint,
		NodeIP: nodeIP, Version: version.Get().GitVersion, Logger: logger, Notice: notice,
		Server: &kubelet.ServerConfig{Address: cfg.BindAddress, Port: cfg.KubeletPort, CertFile: serving.CertFile, KeyFile: serving.KeyFile, ClientCAFile: cp.PKI.CA.CertFile},
	})
	if err != nil {
		return nil, err
	}
	select {
	case <-n.Ready():
	case <-n.Done():
		return nil, fmt.Errorf("node agent: %w", n.Wait())
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// Schedulable once the node lifecycle controller has seen it Ready
	// and lifted the not-ready taint.
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		nd, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, t := range nd.Spec.Taints {
			if t.Key == v1.TaintNodeNotReady || t.Key == v1.TaintNodeUnreachable {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("node %s did not become schedulable: %w", name, err)
	}
	logger.Info("node ready", "node", name, "runtime", n.RuntimeName)
	return n, nil
}

// nodeName is the host's name as a valid Node name.
func nodeName() string {
	h, err := os.Hostname()
	h = strings.ToLower(h)
	if err != nil || len(validation.IsDNS1123Subdomain(h)) > 0 {
		return "gatehouse"
	}
	return h
}
