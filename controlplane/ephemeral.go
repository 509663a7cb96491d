package controlplane

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gatehouse-dev/gatehouse/config"
)

// StartEphemeral starts a control plane for offline work (gatehouse check
// and test): embedded etcd and the API server with Gatehouse's whole
// admission chain and the Gatekeeper syncer, in a temporary directory, on
// free loopback ports, with no controller-manager, scheduler, audit or
// node. Objects sent to it with server-side dry-run are admitted exactly as
// by `gatehouse up`. It keeps its files under dir (made if missing; the
// caller may have put its log there first), which Close removes. args are
// extra kube-apiserver flags (--kube-apiserver-arg).
//
// It differs from `up` in what would only slow it down: authorization is
// AlwaysAllow (requests test admission, not RBAC, and are sent as whatever
// user a test names), API priority and fairness is off, and readiness does
// not wait out the one-second polls of upstream's RBAC and priority-class
// bootstrap hooks: the two system PriorityClasses that the Priority
// admission plugin looks up are created here at once instead.
//
// configure, if given, changes the configuration before the start (gatehouse
// check --stub-webhooks sets WebhookStubs).
func StartEphemeral(ctx context.Context, dir string, logger *slog.Logger, args []string, configure ...func(*config.Config)) (*ControlPlane, error) {
	if err := os.MkdirAll(Layout{DataDir: dir}.LogDir(), 0o700); err != nil {
		return nil, fmt.Errorf("ephemeral control plane directory: %w", err)
	}
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.BindAddress = "127.0.0.1"
	cfg.KubeAPIServerArgs = args
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	cfg.APIPort, cfg.Etcd.ClientPort, cfg.Etcd.PeerPort = ports[0], ports[1], ports[2]
	for _, c := range configure {
		c(cfg)
	}
	cp, err := start(ctx, cfg, logger, true)
	if err != nil {
		// The log stays for the user to read.
		return nil, fmt.Errorf("%w (log: %s)", err, Layout{DataDir: dir}.LogDir())
	}
	cp.removeOnStop = dir
	cp.stopTimeout = ephemeralStopTimeout
	return cp, nil
}

// Close stops the control plane and, for an ephemeral one, removes its
// directory.
func (cp *ControlPlane) Close() {
	cp.stop()
}

// CloseKeepingLog is Close, except that an ephemeral control plane's log
// directory stays; it returns the log directory.
func (cp *ControlPlane) CloseKeepingLog() string {
	dir := cp.removeOnStop
	cp.removeOnStop = ""
	cp.stop()
	if dir == "" {
		return ""
	}
	logs := Layout{DataDir: dir}.LogDir()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if p := filepath.Join(dir, e.Name()); p != logs {
			os.RemoveAll(p)
		}
	}
	return logs
}

// ephemeralStopTimeout is how long Close waits for each group of
// components. The API server's graceful shutdown waits a second or more for
// its clients' HTTP/2 connections to go; an ephemeral control plane is
// closed when its process is about to exit, and its storage is thrown
// away, so that wait is not worth it.
const ephemeralStopTimeout = 150 * time.Millisecond

// ephemeralAPIServerFlags changes the flags of `up` for StartEphemeral.
func ephemeralAPIServerFlags(m flagMap) {
	m["authorization-mode"] = "AlwaysAllow"
	m["enable-priority-and-fairness"] = "false"
}

// ephemeralReadyzExclusions leaves out the readiness checks that only
// wait for bootstrap hooks polling once a second (upstream's
// wait.Poll(1s) sleeps before its first try): RBAC's default roles, which
// AlwaysAllow does not read, and the system PriorityClasses, made by
// ensureSystemPriorityClasses instead.
const ephemeralReadyzExclusions = "?exclude=poststarthook/rbac/bootstrap-roles&exclude=poststarthook/scheduling/bootstrap-system-priority-classes"

// ensureSystemPriorityClasses creates the PriorityClasses upstream's
// bootstrap hook creates (system-node-critical, system-cluster-critical),
// unless it got there first.
func ensureSystemPriorityClasses(ctx context.Context, admin *rest.Config) error {
	client, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return err
	}
	for _, pc := range []schedulingv1.PriorityClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "system-node-critical"}, Value: 2000001000, Description: "Used for system critical pods that must not be moved from their current node."},
		{ObjectMeta: metav1.ObjectMeta{Name: "system-cluster-critical"}, Value: 2000000000, Description: "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."},
	} {
		if _, err := client.SchedulingV1().PriorityClasses().Create(ctx, &pc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating PriorityClass %s: %w", pc.Name, err)
		}
	}
	return nil
}

// freePorts returns n distinct free loopback ports.
func freePorts(n int) ([]int, error) {
	var ports []int
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		held = append(held, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
