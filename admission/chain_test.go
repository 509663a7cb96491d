package admission

import (
	"slices"
	"strings"
	"testing"

	k8sadmission "k8s.io/apiserver/pkg/admission"
	kubeoptions "k8s.io/kubernetes/pkg/kubeapiserver/options"

	"github.com/gatehouse-dev/gatehouse/admission/constraint"
	"github.com/gatehouse-dev/gatehouse/admission/mutation"
)

func TestChainIsUpstreamOrder(t *testing.T) {
	order, err := Chain()
	if err != nil {
		t.Fatal(err)
	}
	// Without Gatehouse's plugins, the chain is upstream's.
	own := map[string]bool{}
	for _, p := range gatehousePlugins {
		own[p.Name] = true
	}
	if upstream := slices.DeleteFunc(slices.Clone(order), func(n string) bool { return own[n] }); !slices.Equal(upstream, kubeoptions.AllOrderedPlugins) {
		t.Errorf("Chain() without Gatehouse's plugins = %v, want upstream's AllOrderedPlugins", upstream)
	}
	// The policy engines and webhooks keep upstream's relative order, with
	// Gatekeeper's mutators between MutatingAdmissionPolicy and the
	// mutating webhooks, and constraints between ValidatingAdmissionPolicy
	// and the validating webhooks.
	// The caBundle injection runs after Gatekeeper's mutators, the
	// ExpansionTemplate and Provider checks after the constraints.
	want := []string{"MutatingAdmissionPolicy", "GatekeeperMutation", "GatehouseCABundleInjection", "MutatingAdmissionWebhook", "ValidatingAdmissionPolicy", "GatekeeperConstraints", "GatekeeperExpansionTemplates", "GatekeeperExternalDataProviders", "ValidatingAdmissionWebhook", "ResourceQuota"}
	last := -1
	for _, name := range want {
		i := slices.Index(order, name)
		if i <= last {
			t.Errorf("%s at %d, want after position %d in %v", name, i, last, order)
		}
		last = i
	}
}

func TestEnabledByDefault(t *testing.T) {
	on, err := EnabledByDefault()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"NamespaceLifecycle", "LimitRanger", "ServiceAccount", "NodeRestriction", "PodSecurity",
		"MutatingAdmissionPolicy", "MutatingAdmissionWebhook", "ValidatingAdmissionPolicy", "ValidatingAdmissionWebhook", "ResourceQuota",
		"GatekeeperConstraints", "GatekeeperMutation", "GatehouseCABundleInjection", "GatekeeperExpansionTemplates",
		"GatekeeperExternalDataProviders",
	} {
		if !slices.Contains(on, name) {
			t.Errorf("%s is not enabled by default; enabled: %v", name, on)
		}
	}
	for _, name := range []string{"AlwaysAdmit", "AlwaysDeny", "AlwaysPullImages", "NamespaceAutoProvision"} {
		if slices.Contains(on, name) {
			t.Errorf("%s is enabled by default, want off as upstream", name)
		}
	}
}

func TestConfigure(t *testing.T) {
	opts := kubeoptions.NewAdmissionOptions()
	if err := Configure(opts, Deps{Constraints: constraint.NewEngine(0), Mutators: mutation.NewSystem()}); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	if opts.GenericAdmission.DefaultOffPlugins.Has("NodeRestriction") {
		t.Error("NodeRestriction is default-off after Configure, want on as kubeadm sets it")
	}
	order, _ := Chain()
	if !slices.Equal(opts.GenericAdmission.RecommendedPluginOrder, order) {
		t.Errorf("RecommendedPluginOrder = %v, want Chain()", opts.GenericAdmission.RecommendedPluginOrder)
	}
}

func TestInsert(t *testing.T) {
	noop := func(*k8sadmission.Plugins, Deps) {}
	upstream := []string{"A", "MutatingAdmissionPolicy", "MutatingAdmissionWebhook", "ValidatingAdmissionPolicy", "ValidatingAdmissionWebhook"}
	tests := []struct {
		name    string
		own     []Plugin
		want    []string
		wantErr string
	}{
		{
			name: "validating and mutating insertion points",
			own: []Plugin{
				{Name: "Constraints", After: AfterValidatingPolicies, Register: noop},
				{Name: "Mutators", After: AfterMutatingPolicies, Register: noop},
			},
			want: []string{"A", "MutatingAdmissionPolicy", "Mutators", "MutatingAdmissionWebhook", "ValidatingAdmissionPolicy", "Constraints", "ValidatingAdmissionWebhook"},
		},
		{
			name: "two plugins at one point keep registration order",
			own: []Plugin{
				{Name: "First", After: AfterValidatingPolicies, Register: noop},
				{Name: "Second", After: AfterValidatingPolicies, Register: noop},
			},
			want: []string{"A", "MutatingAdmissionPolicy", "MutatingAdmissionWebhook", "ValidatingAdmissionPolicy", "First", "Second", "ValidatingAdmissionWebhook"},
		},
		{
			name:    "unknown insertion point",
			own:     []Plugin{{Name: "X", After: "Nope", Register: noop}},
			wantErr: `insertion point "Nope"`,
		},
		{
			name:    "name clash with upstream",
			own:     []Plugin{{Name: "A", After: AfterValidatingPolicies, Register: noop}},
			wantErr: `"A" is ordered twice`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := insert(upstream, tt.own)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("insert = %v\nwant     %v", got, tt.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name       string
		registered []string
		order      []string
		wantErr    string
	}{
		{name: "same sets", registered: []string{"B", "A"}, order: []string{"A", "B"}},
		{name: "registered but not ordered", registered: []string{"A", "B", "C"}, order: []string{"A", "B"}, wantErr: "registered but not ordered: [C]"},
		{name: "ordered but not registered", registered: []string{"A"}, order: []string{"A", "B"}, wantErr: "ordered but not registered: [B]"},
		{name: "both", registered: []string{"A", "C"}, order: []string{"A", "B"}, wantErr: "registered but not ordered: [C]; ordered but not registered: [B]"},
		{name: "duplicate in order", registered: []string{"A"}, order: []string{"A", "A"}, wantErr: "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(tt.registered, tt.order)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Check = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}
