package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gatehouse-dev/gatehouse/config"
	"github.com/gatehouse-dev/gatehouse/controlplane"
)

// clusterFlags is how every command that talks to a running Gatehouse
// finds it: --data-dir (same default as up) or --kubeconfig / $KUBECONFIG.
type clusterFlags struct {
	dataDir, kubeconfig string
}

func (c *clusterFlags) add(cmd *cobra.Command) {
	config.AddDataDirFlag(cmd.Flags(), &c.dataDir)
	cmd.Flags().StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster, instead of the Gatehouse in --data-dir")
}

// restConfig picks the cluster: --kubeconfig, else an explicit --data-dir,
// else $KUBECONFIG, else the default data dir. Both flags at once is a
// usage error: they name two clusters.
func (c *clusterFlags) restConfig(cmd *cobra.Command) (*rest.Config, error) {
	dataDirSet := cmd.Flags().Changed("data-dir")
	if cmd.Flags().Changed("kubeconfig") && dataDirSet {
		return nil, usageErrorf("--kubeconfig and --data-dir name two clusters: give one")
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	switch {
	case c.kubeconfig != "":
		rules.ExplicitPath = c.kubeconfig
	case dataDirSet || os.Getenv(clientcmd.RecommendedConfigPathEnvVar) == "":
		path := controlplane.Layout{DataDir: c.dataDir}.Kubeconfig()
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no kubeconfig at %s: run 'gatehouse up --data-dir %s' first, or give --kubeconfig", path, c.dataDir)
		}
		rules.ExplicitPath = path
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the kubeconfig: %w", err)
	}
	return cfg, nil
}

// gatehouseDataDir is the data dir of the cluster restConfig picks, when
// that cluster is a Gatehouse on this machine (not --kubeconfig or
// $KUBECONFIG).
func (c *clusterFlags) gatehouseDataDir(cmd *cobra.Command) (string, bool) {
	if c.kubeconfig != "" || (!cmd.Flags().Changed("data-dir") && os.Getenv(clientcmd.RecommendedConfigPathEnvVar) != "") {
		return "", false
	}
	return c.dataDir, true
}
