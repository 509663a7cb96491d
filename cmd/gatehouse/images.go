package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/config"
	"github.com/gatehouse-dev/gatehouse/kubelet/containerd"
	"github.com/gatehouse-dev/gatehouse/kubelet/images"
)

// runtimeFlags is how the images commands find the container runtime:
// --container-runtime-endpoint, else the containerd Gatehouse runs for
// --data-dir.
type runtimeFlags struct {
	dataDir, endpoint string
}

func (r *runtimeFlags) add(cmd *cobra.Command) {
	config.AddDataDirFlag(cmd.PersistentFlags(), &r.dataDir)
	cmd.PersistentFlags().StringVar(&r.endpoint, "container-runtime-endpoint", "",
		"containerd socket to use instead of the one Gatehouse runs for --data-dir, e.g. unix:///run/containerd/containerd.sock")
}

func (r *runtimeFlags) resolve(cmd *cobra.Command) (string, error) {
	flags := cmd.Flags()
	if flags.Changed("container-runtime-endpoint") && flags.Changed("data-dir") {
		return "", usageErrorf("--container-runtime-endpoint and --data-dir name two runtimes: give one")
	}
	if r.endpoint != "" {
		return r.endpoint, nil
	}
	l := containerd.Layout{DataDir: r.dataDir}
	if _, err := os.Stat(l.Socket()); errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("no containerd socket at %s: Gatehouse's containerd for --data-dir %s is not running; give --container-runtime-endpoint to use another containerd", l.Socket(), r.dataDir)
	}
	return l.Endpoint(), nil
}

func newImagesCommand() *cobra.Command {
	var rf runtimeFlags
	cmd := &cobra.Command{
		Use:   "images",
		Short: "Load and list the node's container images",
		Long: `Manage the images of the node's container runtime (containerd, namespace k8s.io,
where the CRI plugin finds them). No registry is needed: images come from
archives, or from a registry on loopback that pods name in their image.`,
		Args: cobra.NoArgs,
	}
	rf.add(cmd)
	cmd.AddCommand(newImagesLoadCommand(&rf), newImagesListCommand(&rf))
	return cmd
}

func newImagesLoadCommand(rf *runtimeFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "load FILE...",
		Short: "Import image archives (docker save or OCI layout tars) into the runtime",
		Long: `Import image archives into the node's runtime and unpack them, so pods can use
them at once without a pull. Each FILE is a docker-archive (what 'docker save'
writes) or an OCI image layout tar (what 'docker buildx build --output
type=oci' or 'skopeo copy … oci-archive:FILE' write), optionally gzipped;
"-" reads standard input. Prints "Loaded image: NAME (DIGEST)" for each image.`,
		Example: `  gatehouse images load busybox.tar
  docker save nginx:1.27 | gatehouse images load -`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			endpoint, err := rf.resolve(cmd)
			if err != nil {
				return err
			}
			// Ctrl-C cancels the import; containerd drops what was
			// half-imported with the import's lease.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			cmd.SetContext(ctx)
			for _, file := range files {
				if err := loadFile(cmd, endpoint, file); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func loadFile(cmd *cobra.Command, endpoint, file string) error {
	var r io.Reader = cmd.InOrStdin()
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return usageError{err}
		}
		defer f.Close()
		r = f
	}
	loaded, err := images.Load(cmd.Context(), endpoint, r)
	if errors.Is(err, images.ErrInvalidArchive) {
		return usageErrorf("%s: %v", file, err)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	for _, img := range loaded {
		printf(cmd.OutOrStdout(), "Loaded image: %s (%s)\n", img.Name, img.Digest)
	}
	return nil
}

func newImagesListCommand(rf *runtimeFlags) *cobra.Command {
	var out outputFlag
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the runtime's images",
		Long: `List the named images of the node's runtime: name, digest (of the manifest or
index the name points at, as in a registry) and size of this platform's
content as stored.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			endpoint, err := rf.resolve(cmd)
			if err != nil {
				return err
			}
			list, err := images.List(cmd.Context(), endpoint)
			if err != nil {
				return err
			}
			return out.print(cmd.OutOrStdout(), list, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
				printf(tw, "NAME\tDIGEST\tSIZE\n")
				for _, img := range list {
					printf(tw, "%s\t%s\t%s\n", img.Name, shortDigest(img.Digest), units.HumanSize(float64(img.Size)))
				}
				return tw.Flush()
			})
		},
	}
	out.add(cmd)
	return cmd
}

// shortDigest abbreviates a digest the way docker shows image IDs.
func shortDigest(d string) string {
	algo, hex, ok := strings.Cut(d, ":")
	if !ok || len(hex) <= 12 {
		return d
	}
	return algo + ":" + hex[:12]
}
