package main

import (
	"io"
	"runtime"
	"runtime/debug"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// gatehouseVersion is set at build time by the Makefile
// (-X main.gatehouseVersion=...); "dev" otherwise.
var gatehouseVersion = "dev"

// Versions are the versions of Gatehouse and what it embeds.
type Versions struct {
	Gatehouse  string `json:"gatehouse"`
	Kubernetes string `json:"kubernetes"`
	Etcd       string `json:"etcd"`
	Go         string `json:"go"`
}

func currentVersions() Versions {
	v := Versions{Gatehouse: gatehouseVersion, Kubernetes: "unknown", Etcd: "unknown", Go: runtime.Version()}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			switch dep.Path {
			case "k8s.io/kubernetes":
				v.Kubernetes = dep.Version
			case "go.etcd.io/etcd/server/v3":
				v.Etcd = dep.Version
			}
		}
	}
	return v
}

func newVersionCommand() *cobra.Command {
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the versions of Gatehouse and the components it embeds",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			v := currentVersions()
			return out.print(cmd.OutOrStdout(), v, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				printf(tw, "COMPONENT\tVERSION\n")
				printf(tw, "gatehouse\t%s\n", v.Gatehouse)
				printf(tw, "kubernetes\t%s\n", v.Kubernetes)
				printf(tw, "etcd\t%s\n", v.Etcd)
				printf(tw, "go\t%s\n", v.Go)
				return tw.Flush()
			})
		},
	}
	out.add(cmd)
	return cmd
}
