package e2e

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestExternalEtcd points a second Gatehouse at the first one's etcd, as
// --etcd-servers points at an existing cluster: both serve the same objects.
func TestExternalEtcd(t *testing.T) {
	first := startGatehouse(t)
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "shared"}, Data: map[string]string{"from": "first"}}
	if _, err := first.client.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	pki := filepath.Join(first.dataDir, "pki")
	second := startGatehouse(t,
		"--etcd-servers", "https://127.0.0.1:"+strconv.Itoa(first.ports.etcdClient),
		"--etcd-cafile", filepath.Join(pki, "etcd", "ca.crt"),
		"--etcd-certfile", filepath.Join(pki, "apiserver-etcd-client.crt"),
		"--etcd-keyfile", filepath.Join(pki, "apiserver-etcd-client.key"),
	)
	got, err := second.client.CoreV1().ConfigMaps("default").Get(ctx, "shared", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("second instance on the first's etcd: %v", err)
	}
	if got.Data["from"] != "first" {
		t.Errorf("shared ConfigMap data = %v, want from=first", got.Data)
	}
	// Shared storage means leader election: only one controller-manager
	// may run the controllers.
	poll(t, 30*time.Second, func() error {
		_, err := second.client.CoordinationV1().Leases("kube-system").Get(ctx, "kube-controller-manager", metav1.GetOptions{})
		return err
	})
}

// TestEtcdUnreachable starts Gatehouse against an etcd endpoint where
// nothing listens: it must say which endpoints it is retrying, and still
// stop cleanly on SIGTERM.
func TestEtcdUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "https://" + l.Addr().String()
	l.Close()

	inst := newInstance(t, "--etcd-servers", endpoint)
	p := inst.launch(t)
	poll(t, 20*time.Second, func() error {
		if s := p.stderr.String(); !strings.Contains(s, "etcd unreachable, retrying") || !strings.Contains(s, endpoint) {
			return fmt.Errorf("stderr does not yet say it is retrying %s:\n%s", endpoint, s)
		}
		return nil
	})
	if p.exited() {
		t.Fatalf("gatehouse exited instead of retrying; stderr:\n%s", p.stderr.String())
	}
	inst.stop(t)
}
