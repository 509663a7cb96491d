package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/config"
	"github.com/gatehouse-dev/gatehouse/controlplane"
)

func newKubeconfigCommand() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "kubeconfig",
		Short: "Print the admin kubeconfig of the Gatehouse in --data-dir",
		Long: `Print the admin kubeconfig (a client certificate in system:masters) that
gatehouse up wrote to <data-dir>/kubeconfig. Use it as:

  gatehouse kubeconfig > ~/.kube/gatehouse && export KUBECONFIG=~/.kube/gatehouse`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := controlplane.Layout{DataDir: dataDir}.Kubeconfig()
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
	return cmd
}
