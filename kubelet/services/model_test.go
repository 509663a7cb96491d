package services

import (
	"net/netip"
	"testing"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/gatehouse-dev/gatehouse/kubelet/services/proxy"
)

func service(ns, name, clusterIP string, selector map[string]string, ports ...v1.ServicePort) *v1.Service {
	return &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1.ServiceSpec{ClusterIP: clusterIP, ClusterIPs: []string{clusterIP}, Selector: selector, Ports: ports},
	}
}

func slice(ns, svc string, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svc + "-abc", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4, Ports: ports, Endpoints: eps,
	}
}

func endpoint(ip, node string, ready, serving, terminating bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip}, NodeName: ptr.To(node),
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(serving), Terminating: ptr.To(terminating)}}
}

func TestModel(t *testing.T) {
	gateway := netip.MustParseAddr("10.244.0.1")
	web := service("default", "web", "10.96.0.20", map[string]string{"app": "web"},
		v1.ServicePort{Name: "http", Protocol: v1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt(8080)})
	headless := service("default", "db", "None", map[string]string{"app": "db"}, v1.ServicePort{Name: "pg", Protocol: v1.ProtocolTCP, Port: 5432})
	kubeDNS := service("kube-system", "kube-dns", "10.96.0.10", nil,
		v1.ServicePort{Name: "dns", Protocol: v1.ProtocolUDP, Port: 53}, v1.ServicePort{Name: "dns-tcp", Protocol: v1.ProtocolTCP, Port: 53})
	slices := []*discoveryv1.EndpointSlice{
		slice("default", "web", []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(v1.ProtocolTCP), Port: ptr.To[int32](8080)}, {Name: ptr.To("other"), Port: ptr.To[int32](9)}},
			endpoint("10.244.0.5", "node-a", true, true, false), endpoint("10.244.0.6", "node-b", false, true, true)),
		slice("default", "db", []discoveryv1.EndpointPort{{Name: ptr.To("pg"), Port: ptr.To[int32](5432)}},
			endpoint("10.244.0.7", "node-a", true, true, false), endpoint("10.244.0.8", "node-a", false, false, false)),
	}
	ports, names := model([]*v1.Service{web, headless, kubeDNS}, slices, "node-a", gateway)

	if len(ports) != 3 {
		t.Fatalf("%d service ports, want 3 (web and kube-dns's two; headless has none): %+v", len(ports), ports)
	}
	want := []proxy.Endpoint{
		{IP: netip.MustParseAddr("10.244.0.5"), Port: 8080, Ready: true, Serving: true, Local: true},
		{IP: netip.MustParseAddr("10.244.0.6"), Port: 8080, Serving: true, Terminating: true},
	}
	if got := ports[0].Endpoints; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("web endpoints %+v, want %+v (slice port matched by name and protocol)", got, want)
	}
	for _, p := range ports[1:] {
		if p.Name != "kube-dns" || len(p.Endpoints) != 1 || p.Endpoints[0].IP != gateway || p.Endpoints[0].Port != 53 {
			t.Errorf("kube-dns %s routed to %+v, want the node's DNS at %s:53", p.PortName, p.Endpoints, gateway)
		}
	}
	// A kube-dns with a selector (CoreDNS in the cluster) is not hijacked.
	kubeDNS.Spec.Selector = map[string]string{"k8s-app": "kube-dns"}
	ports, _ = model([]*v1.Service{kubeDNS}, nil, "node-a", gateway)
	if len(ports[0].Endpoints) != 0 {
		t.Errorf("kube-dns with a selector routed to %+v", ports[0].Endpoints)
	}

	if len(names) != 3 {
		t.Fatalf("%d DNS services, want 3", len(names))
	}
	db := names[1]
	if !db.Headless || len(db.Endpoints) != 1 || db.Endpoints[0].IP.String() != "10.244.0.7" || db.Endpoints[0].Ports[0].Port != 5432 {
		t.Errorf("headless db for DNS: %+v, want only the ready endpoint 10.244.0.7 with port 5432", db)
	}
	if w := names[0]; len(w.ClusterIPs) != 1 || w.ClusterIPs[0].String() != "10.96.0.20" || w.Ports[0].Name != "http" {
		t.Errorf("web for DNS: %+v", w)
	}
}
