package kubelet

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Upstream's defaults: the Lease is renewed every 10 s and lasts 40 s;
// the Node's status is posted when it changes and at least every 5 min
// (nodeStatusReportFrequency); here every minute, cheap at this scale.
const (
	leaseDuration      = 40 * time.Second
	leaseRenewInterval = 10 * time.Second
	statusInterval     = time.Minute
	defaultMaxPods     = 110
	nodeLeaseNamespace = "kube-node-lease"
)

// registerNode creates the Node, or takes over the one a previous run made.
func (a *Agent) registerNode(ctx context.Context) error {
	node := a.initialNode()
	created, err := a.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	switch {
	case err == nil:
		node = created
	case apierrors.IsAlreadyExists(err):
		node, err = a.client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("node %s: %w", a.cfg.NodeName, err)
		}
	default:
		return fmt.Errorf("registering node %s: %w", a.cfg.NodeName, err)
	}
	// As upstream's updateNodeStatus: up to five tries, each on a fresh
	// Node, since the controller-manager writes it too while it starts (pod
	// CIDR, the not-ready taint), and a stale object is refused (conflict,
	// or NodeRestriction's "not allowed to modify taints").
	for try := 1; ; try++ {
		err = a.postNodeStatus(ctx, node)
		if err == nil || try == 5 || ctx.Err() != nil {
			break
		}
		if node, err = a.client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("node %s: %w", a.cfg.NodeName, err)
		}
	}
	if err != nil {
		return err
	}
	return a.renewLease(ctx, node)
}

func (a *Agent) initialNode() *v1.Node {
	node := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: a.cfg.NodeName,
			Labels: map[string]string{
				v1.LabelHostname:   a.cfg.NodeName,
				v1.LabelOSStable:   runtime.GOOS,
				v1.LabelArchStable: runtime.GOARCH,
			},
		},
	}
	if a.cfg.PodCIDR != "" {
		node.Spec.PodCIDR, node.Spec.PodCIDRs = a.cfg.PodCIDR, []string{a.cfg.PodCIDR}
	}
	return node
}

// postNodeStatus sets capacity, addresses, nodeInfo and the conditions.
func (a *Agent) postNodeStatus(ctx context.Context, node *v1.Node) error {
	node = node.DeepCopy()
	now := metav1.Now()
	capacity := v1.ResourceList{
		v1.ResourceCPU:    *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI),
		v1.ResourceMemory: *resource.NewQuantity(memTotal(), resource.BinarySI),
		v1.ResourcePods:   *resource.NewQuantity(int64(a.cfg.MaxPods), resource.DecimalSI),
	}
	var fs syscall.Statfs_t
	if syscall.Statfs(a.cfg.DataDir, &fs) == nil {
		capacity[v1.ResourceEphemeralStorage] = *resource.NewQuantity(int64(fs.Blocks)*fs.Bsize, resource.BinarySI)
	}
	node.Status.Capacity, node.Status.Allocatable = capacity, capacity.DeepCopy()
	node.Status.Addresses = []v1.NodeAddress{
		{Type: v1.NodeInternalIP, Address: a.cfg.NodeIP.String()},
		{Type: v1.NodeHostName, Address: a.cfg.NodeName},
	}
	node.Status.NodeInfo = v1.NodeSystemInfo{
		MachineID:               readTrimmed("/etc/machine-id"),
		SystemUUID:              readTrimmed("/sys/class/dmi/id/product_uuid"),
		BootID:                  readTrimmed("/proc/sys/kernel/random/boot_id"),
		KernelVersion:           readTrimmed("/proc/sys/kernel/osrelease"),
		OSImage:                 osImage(),
		ContainerRuntimeVersion: a.runtimeID,
		KubeletVersion:          a.cfg.Version,
		OperatingSystem:         runtime.GOOS,
		Architecture:            runtime.GOARCH,
	}
	if a.cfg.Server != nil {
		node.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(a.cfg.Server.Port)
	}
	set := func(t v1.NodeConditionType, status v1.ConditionStatus, reason, message string) {
		for i := range node.Status.Conditions {
			c := &node.Status.Conditions[i]
			if c.Type == t {
				if c.Status != status {
					c.LastTransitionTime = now
				}
				c.Status, c.Reason, c.Message, c.LastHeartbeatTime = status, reason, message, now
				return
			}
		}
		node.Status.Conditions = append(node.Status.Conditions, v1.NodeCondition{Type: t, Status: status, Reason: reason, Message: message, LastHeartbeatTime: now, LastTransitionTime: now})
	}
	set(v1.NodeMemoryPressure, v1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available")
	set(v1.NodeDiskPressure, v1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure")
	set(v1.NodePIDPressure, v1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available")
	if err := a.runtimeReady(ctx); err != nil {
		set(v1.NodeReady, v1.ConditionFalse, "KubeletNotReady", err.Error())
	} else {
		set(v1.NodeReady, v1.ConditionTrue, "KubeletReady", "kubelet is posting ready status")
	}
	_, err := a.client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("node %s status: %w", a.cfg.NodeName, err)
	}
	return nil
}

// runtimeReady is the runtime's own word on its readiness (CRI Status).
func (a *Agent) runtimeReady(ctx context.Context) error {
	st, err := a.runtime.Status(ctx, false)
	if err != nil {
		return fmt.Errorf("container runtime status check failed: %w", err)
	}
	for _, c := range st.GetStatus().GetConditions() {
		if !c.Status {
			return fmt.Errorf("container runtime not ready: %s: %s %s", c.Type, c.Reason, c.Message)
		}
	}
	return nil
}

func (a *Agent) renewLease(ctx context.Context, node *v1.Node) error {
	leases := a.client.CoordinationV1().Leases(nodeLeaseNamespace)
	now := metav1.NewMicroTime(time.Now())
	lease, err := leases.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Namespace: nodeLeaseNamespace,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(a.cfg.NodeName), LeaseDurationSeconds: ptr.To(int32(leaseDuration / time.Second)), RenewTime: &now},
		}
		_, err = leases.Create(ctx, lease, metav1.CreateOptions{})
	} else if err == nil {
		lease.Spec.RenewTime, lease.Spec.HolderIdentity = &now, ptr.To(a.cfg.NodeName)
		_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("node lease %s/%s: %w", nodeLeaseNamespace, a.cfg.NodeName, err)
	}
	return nil
}

// heartbeatLoop renews the Lease and posts the Node's status.
func (a *Agent) heartbeatLoop(ctx context.Context) {
	lease := time.NewTicker(leaseRenewInterval)
	status := time.NewTicker(statusInterval)
	defer lease.Stop()
	defer status.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-lease.C:
		case <-status.C:
			node, err := a.client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
			if err == nil {
				err = a.postNodeStatus(ctx, node)
			}
			if err != nil && ctx.Err() == nil {
				a.logger.Warn("node status", "err", err)
			}
			continue
		}
		node, err := a.client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			// Deleted from the API: register again, as the kubelet does.
			err = a.registerNode(ctx)
		} else if err == nil {
			err = a.renewLease(ctx, node)
		}
		if err != nil && ctx.Err() == nil {
			a.logger.Warn("node heartbeat", "err", err)
		}
	}
}

func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func osImage() string {
	data, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return runtime.GOOS
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return runtime.GOOS
}

func readTrimmed(path string) string {
	data, _ := os.ReadFile(path)
	return strings.TrimSpace(string(data))
}
