package controlplane

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// ensureNodeServices creates what the node agents' Service routing and
// cluster DNS need, unless it exists:
//   - a ClusterRoleBinding of system:node-proxier (kube-proxy's role) to
//     the group system:nodes: the node agent does kube-proxy's work with
//     the node's identity, which the Node authorizer lets read Services
//     but not EndpointSlices or ServiceCIDRs;
//   - the Service kube-system/kube-dns, without a selector, on the tenth
//     address of the service range (10.96.0.10, as kubeadm's): every node
//     routes it to the DNS server it runs itself, and gives it to pods
//     with dnsPolicy ClusterFirst.
func ensureNodeServices(ctx context.Context, admin *rest.Config, serviceCIDR string) error {
	client, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return err
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "gatehouse:node-proxier", Labels: map[string]string{"app.kubernetes.io/managed-by": "gatehouse"}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:node-proxier"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: "system:nodes"}},
	}
	if _, err := client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating ClusterRoleBinding %s: %w", binding.Name, err)
	}
	ip, err := clusterDNSIP(serviceCIDR)
	if err != nil {
		return err
	}
	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceSystem, Name: "kube-dns",
			Labels:      map[string]string{"k8s-app": "kube-dns", "kubernetes.io/name": "ClusterDNS", "app.kubernetes.io/managed-by": "gatehouse"},
			Annotations: map[string]string{"gatehouse.dev/served-by": "the DNS server of each node agent (no selector: each node routes this Service to its own)"}},
		Spec: v1.ServiceSpec{
			ClusterIP: ip.String(),
			Ports: []v1.ServicePort{
				{Name: "dns", Protocol: v1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(53)},
				{Name: "dns-tcp", Protocol: v1.ProtocolTCP, Port: 53, TargetPort: intstr.FromInt32(53)},
			},
		},
	}
	// kube-system is made by the API server's system namespaces
	// controller, which may not have run yet.
	// An existing one is left as it is: creating it again would fail on
	// its address (already allocated) before the name.
	if _, err := client.CoreV1().Services(svc.Namespace).Get(ctx, svc.Name, metav1.GetOptions{}); err == nil {
		return nil
	}
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{})
		switch {
		case err == nil || apierrors.IsAlreadyExists(err):
			return true, nil
		case apierrors.IsNotFound(err):
			return false, nil
		}
		return false, fmt.Errorf("creating Service kube-system/kube-dns at %s: %w", ip, err)
	})
}

// clusterDNSIP is the tenth address of the first service range.
func clusterDNSIP(serviceCIDR string) (netip.Addr, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(strings.Split(serviceCIDR, ",")[0]))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("service CIDR %q: %w", serviceCIDR, err)
	}
	ip := p.Masked().Addr()
	for range 10 {
		ip = ip.Next()
	}
	if !p.Contains(ip) {
		return netip.Addr{}, fmt.Errorf("service CIDR %q is too small for the cluster DNS address", serviceCIDR)
	}
	return ip, nil
}
