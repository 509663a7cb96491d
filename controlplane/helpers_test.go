package controlplane

import (
	"testing"

	cliflag "k8s.io/component-base/cli/flag"
	apiserveroptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	cmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	cmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	schedoptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"

	"github.com/gatehouse-dev/gatehouse/config"
	"github.com/gatehouse-dev/gatehouse/controlplane/pki"
)

func testConfigAndBundle(t *testing.T) (*config.Config, *pki.Bundle) {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	b, err := pki.Ensure(pki.Options{Dir: Layout{DataDir: cfg.DataDir}.PKIDir()})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, b
}

func apiserverFlagSets() cliflag.NamedFlagSets { return apiserveroptions.NewServerRunOptions().Flags() }

func controllerManagerFlagSets(t *testing.T) cliflag.NamedFlagSets {
	s, err := cmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		t.Fatal(err)
	}
	return s.Flags(cmapp.KnownControllers(), cmapp.ControllersDisabledByDefault(), cmapp.ControllerAliases())
}

func schedulerFlagSets() cliflag.NamedFlagSets { return *schedoptions.NewOptions().Flags }
