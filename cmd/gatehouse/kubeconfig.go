package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/config"
	"github.com/gatehouse-dev/gatehouse/controlplane"
	"github.com/gatehouse-dev/gatehouse/controlplane/pki"
)

func newKubeconfigCommand() *cobra.Command {
	var dataDir, nodeName string
	cmd := &cobra.Command{
		Use:   "kubeconfig",
		Short: "Print the admin kubeconfig of the Gatehouse in --data-dir",
		Long: `Print the admin kubeconfig (a client certificate in system:masters) that
gatehouse up wrote to <data-dir>/kubeconfig. Use it as:

  gatehouse kubeconfig > ~/.kube/gatehouse && export KUBECONFIG=~/.kube/gatehouse

With --node NAME it issues instead a kubeconfig for a node agent joining this
control plane: a client certificate for system:node:NAME in system:nodes, the
identity the Node authorizer and NodeRestriction expect of a kubelet.

  gatehouse kubeconfig --node worker-1 > worker-1.conf
  # on worker-1:
  gatehouse node --kubeconfig worker-1.conf`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := controlplane.Layout{DataDir: dataDir}.Kubeconfig()
			if nodeName != "" {
				return writeNodeKubeconfig(cmd.OutOrStdout(), dataDir, path, nodeName)
			}
			data, err := os.ReadFile(path)
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("no kubeconfig at %s: run 'gatehouse up --data-dir %s' first", path, dataDir)
			}
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(data)
			return err
		},
	}
	config.AddDataDirFlag(cmd.Flags(), &dataDir)
	cmd.Flags().StringVar(&nodeName, "node", "", "issue a node agent's kubeconfig (system:node:NAME) instead of printing the admin one")
	return cmd
}

// writeNodeKubeconfig issues a node identity from the data dir's CA for
// the API server the admin kubeconfig names.
func writeNodeKubeconfig(out io.Writer, dataDir, adminPath, name string) error {
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return usageErrorf("--node %q: %s", name, strings.Join(errs, "; "))
	}
	admin, err := clientcmd.LoadFromFile(adminPath)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no kubeconfig at %s: run 'gatehouse up --data-dir %s' first", adminPath, dataDir)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", adminPath, err)
	}
	cluster := admin.Clusters[pki.ContextName]
	if cluster == nil {
		return fmt.Errorf("%s: no cluster %q", adminPath, pki.ContextName)
	}
	bundle, err := pki.LoadCA(controlplane.Layout{DataDir: dataDir}.PKIDir())
	if err != nil {
		return err
	}
	identity, err := bundle.IssueClient("kubelet-client-"+name, "system:node:"+name, []string{"system:nodes"})
	if err != nil {
		return err
	}
	cfg, err := bundle.Kubeconfig(identity, cluster.Server)
	if err != nil {
		return err
	}
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	_, err = out.Write(data)
	return err
}
