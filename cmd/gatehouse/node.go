package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"

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

// The node agent's client rate: upstream's kubelet allows 50 QPS (burst
// 100); a pod costs the agent about eight requests (status patches,
// events, a token, its ConfigMaps), so at that rate 50 pods started at once
// wait ~6 s on the client's own limiter (bench/README.md, node part).
const nodeAPIQPS, nodeAPIBurst = 200, 400

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
	restCfg := &rest.Config{Host: cp.Server, QPS: nodeAPIQPS, Burst: nodeAPIBurst, UserAgent: "gatehouse-node/" + name,
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

func newNodeCommand() *cobra.Command {
	var (
		dataDir, kubeconfig, name, runtime, endpoint, bindAddress, nodeIP string
		port, maxPods                                                     int
	)
	cmd := &cobra.Command{
		Use:   "node --kubeconfig FILE",
		Short: "Run only the node agent, joining the control plane of --kubeconfig",
		Long: `Run Gatehouse's node agent alone: it registers this machine as a Node of the
control plane that --kubeconfig points at and runs the pods bound to it, as
'gatehouse up' does for its own node. The kubeconfig must carry a node
identity (system:node:NAME in system:nodes), which the control plane's
machine issues with:

  gatehouse kubeconfig --node NAME > NAME.conf

The runtime is chosen as for 'gatehouse up' (--runtime auto|cri|simulated).
The kubelet API (container logs) listens on --bind-address:--kubelet-port with
a self-signed serving certificate, as a kubelet without one does, and accepts
clients the control plane's CA signed or whose token the API server accepts.
One node agent per machine: its pod bridge is gatehouse0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if kubeconfig == "" {
				return usageErrorf("--kubeconfig is required: a node identity from 'gatehouse kubeconfig --node NAME'")
			}
			ip := net.ParseIP(nodeIP)
			if nodeIP != "" && ip == nil {
				return usageErrorf("--node-ip %q is not an IP address", nodeIP)
			}
			if maxPods < 1 {
				return usageErrorf("--max-pods %d: must be at least 1", maxPods)
			}
			return runNode(cmd, nodeOptions{dataDir: dataDir, kubeconfig: kubeconfig, name: name, runtime: runtime, endpoint: endpoint, bindAddress: bindAddress, port: port, nodeIP: ip, maxPods: maxPods})
		},
	}
	f := cmd.Flags()
	config.AddDataDirFlag(f, &dataDir)
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig with the node's identity (gatehouse kubeconfig --node NAME)")
	f.StringVar(&name, "node-name", "", "the Node's name (default: the identity's system:node:NAME)")
	f.StringVar(&runtime, "runtime", config.RuntimeAuto, "container runtime: auto, cri or simulated")
	f.StringVar(&endpoint, "container-runtime-endpoint", "", "CRI endpoint of an existing runtime, e.g. unix:///run/containerd/containerd.sock")
	f.StringVar(&bindAddress, "bind-address", "0.0.0.0", "address of the kubelet API")
	f.IntVar(&port, "kubelet-port", 10250, "port of the kubelet API")
	f.IntVar(&maxPods, "max-pods", 110, "the Node's pods capacity (as the kubelet's --max-pods); raise it for scale tests on the simulated runtime")
	f.StringVar(&nodeIP, "node-ip", "", "the Node's InternalIP, where the API server reaches the kubelet API (default: the host's address)")
	return cmd
}

type nodeOptions struct {
	dataDir, kubeconfig, name, runtime, endpoint, bindAddress string
	port, maxPods                                             int
	nodeIP                                                    net.IP
}

func runNode(cmd *cobra.Command, o nodeOptions) error {
	restCfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return usageErrorf("--kubeconfig %s: %v", o.kubeconfig, err)
	}
	identity, err := nodeIdentity(restCfg)
	if err != nil {
		return usageErrorf("--kubeconfig %s: %v", o.kubeconfig, err)
	}
	if o.name == "" {
		o.name = identity
	} else if o.name != identity {
		return usageErrorf("--node-name %s: the kubeconfig's identity is system:node:%s, and NodeRestriction lets a node change only its own Node", o.name, identity)
	}
	logger, logPath, err := setupLogging(filepath.Join(o.dataDir, "logs"), 0, cmd.ErrOrStderr(), slog.LevelInfo)
	if err != nil {
		return fmt.Errorf("data dir %s: %w", o.dataDir, err)
	}
	pkiDir := filepath.Join(o.dataDir, "kubelet", "pki")
	serving, clientCA, err := nodeServingFiles(pkiDir, o.name, restCfg, o.nodeIP)
	if err != nil {
		return err
	}
	restCfg.QPS, restCfg.Burst, restCfg.UserAgent = nodeAPIQPS, nodeAPIBurst, "gatehouse-node/"+o.name
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	ctx, cancel := signalContext(logger)
	defer cancel()
	n, err := node.Start(ctx, node.Options{
		Name: o.name, DataDir: o.dataDir, Client: client, Runtime: o.runtime, Endpoint: o.endpoint,
		NodeIP: o.nodeIP, Version: version.Get().GitVersion, Logger: logger, MaxPods: o.maxPods,
		Notice: func(line string) { fmt.Fprintln(cmd.ErrOrStderr(), line) },
		Server: &kubelet.ServerConfig{Address: o.bindAddress, Port: o.port, CertFile: serving + ".crt", KeyFile: serving + ".key", ClientCAFile: clientCA},
	})
	if err != nil {
		return fmt.Errorf("%w (details in %s)", err, logPath)
	}
	select {
	case <-n.Ready():
		fmt.Fprintf(cmd.OutOrStdout(), "node %s ready (runtime: %s)\n", o.name, n.RuntimeName)
	case <-n.Done():
	}
	if err := n.Wait(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("%w (details in %s)", err, logPath)
	}
	logger.Info("node agent stopped")
	return nil
}

// nodeIdentity is NAME of the client certificate's system:node:NAME.
func nodeIdentity(cfg *rest.Config) (string, error) {
	data := cfg.TLSClientConfig.CertData
	if len(data) == 0 && cfg.TLSClientConfig.CertFile != "" {
		var err error
		if data, err = os.ReadFile(cfg.TLSClientConfig.CertFile); err != nil {
			return "", err
		}
	}
	certs, err := certutil.ParseCertsPEM(data)
	if err != nil || len(certs) == 0 {
		return "", errors.New("no client certificate: a node authenticates as system:node:NAME with one (gatehouse kubeconfig --node NAME)")
	}
	name, ok := strings.CutPrefix(certs[0].Subject.CommonName, "system:node:")
	if !ok || !slices.Contains(certs[0].Subject.Organization, "system:nodes") {
		return "", fmt.Errorf("the client certificate is %q in %v, not a node identity (system:node:NAME in system:nodes)", certs[0].Subject.CommonName, certs[0].Subject.Organization)
	}
	return name, nil
}

// nodeServingFiles writes, once, a self-signed serving certificate for the
// kubelet API (as a kubelet without one makes) and the cluster CA that
// signs clients, from the kubeconfig.
func nodeServingFiles(dir, name string, cfg *rest.Config, ip net.IP) (servingBase, clientCA string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	servingBase = filepath.Join(dir, "kubelet")
	if _, err := os.Stat(servingBase + ".crt"); err != nil {
		var ips []net.IP
		if ip != nil {
			ips = append(ips, ip)
		}
		certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey(name, ips, []string{"localhost"})
		if err != nil {
			return "", "", err
		}
		if err := os.WriteFile(servingBase+".key", keyPEM, 0o600); err != nil {
			return "", "", err
		}
		if err := os.WriteFile(servingBase+".crt", certPEM, 0o644); err != nil {
			return "", "", err
		}
	}
	ca := cfg.TLSClientConfig.CAData
	if len(ca) == 0 && cfg.TLSClientConfig.CAFile != "" {
		if ca, err = os.ReadFile(cfg.TLSClientConfig.CAFile); err != nil {
			return "", "", err
		}
	}
	if len(ca) == 0 {
		return "", "", errors.New("the kubeconfig names no certificate authority: the kubelet API needs the cluster CA to authenticate the API server")
	}
	clientCA = filepath.Join(dir, "client-ca.crt")
	return servingBase, clientCA, os.WriteFile(clientCA, ca, 0o644)
}
