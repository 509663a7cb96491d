package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/config"
	"github.com/gatehouse-dev/gatehouse/controlplane"
	"github.com/gatehouse-dev/gatehouse/controlplane/pki"
)

func newWebhookCertsCommand() *cobra.Command {
	var (
		dataDir, out string
		hosts, ips   []string
		force        bool
	)
	cmd := &cobra.Command{
		Use:   "certs --host NAME|--ip ADDR --out DIR",
		Short: "Issue a serving certificate for a webhook from the Gatehouse CA",
		Long: `Write a serving certificate and key for your webhook server, signed by the CA
of the Gatehouse in --data-dir, into DIR: tls.crt, tls.key (mode 0600) and
ca.crt (the CA, to put in a caBundle by hand if you must). Annotate your
ValidatingWebhookConfiguration or MutatingWebhookConfiguration with
gatehouse.dev/inject-ca-bundle: "true" and Gatehouse fills in every webhook's
caBundle for you.

Existing files in DIR are kept unless --force. Nothing is written into the
data directory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageErrorf("--out: give the directory to write the certificate to")
			}
			if len(hosts) == 0 && len(ips) == 0 {
				return usageErrorf("--host or --ip: give at least one name the webhook is reached by")
			}
			var addrs []net.IP
			for _, s := range ips {
				ip := net.ParseIP(s)
				if ip == nil {
					return usageErrorf("--ip %q: not an IP address", s)
				}
				addrs = append(addrs, ip)
			}
			files := map[string]string{"tls.crt": filepath.Join(out, "tls.crt"), "tls.key": filepath.Join(out, "tls.key"), "ca.crt": filepath.Join(out, "ca.crt")}
			if !force {
				for _, p := range files {
					if _, err := os.Stat(p); err == nil {
						return usageErrorf("%s exists: use --force to replace it", p)
					} else if !errors.Is(err, fs.ErrNotExist) {
						return err
					}
				}
			}
			bundle, err := pki.LoadCA(controlplane.Layout{DataDir: dataDir}.PKIDir())
			if err != nil {
				return fmt.Errorf("%w (run 'gatehouse up --data-dir %s' once first)", err, dataDir)
			}
			cn := "webhook"
			if len(hosts) > 0 {
				cn = hosts[0]
			}
			certPEM, keyPEM, err := bundle.SignServing(cn, hosts, addrs)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return fmt.Errorf("--out %s: %w", out, err)
			}
			for _, f := range []struct {
				path string
				data []byte
				mode os.FileMode
			}{
				{files["tls.key"], keyPEM, 0o600},
				{files["tls.crt"], certPEM, 0o644},
				{files["ca.crt"], bundle.CA.PEM(), 0o644},
			} {
				// WriteFile keeps an existing file's mode: remove it first.
				_ = os.Remove(f.path)
				if err := os.WriteFile(f.path, f.data, f.mode); err != nil {
					return fmt.Errorf("writing %s: %w", f.path, err)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s, %s and %s\n", files["tls.crt"], files["tls.key"], files["ca.crt"])
			return nil
		},
	}
	config.AddDataDirFlag(cmd.Flags(), &dataDir)
	cmd.Flags().StringArrayVar(&hosts, "host", nil, "DNS name of the webhook server (repeatable)")
	cmd.Flags().StringArrayVar(&ips, "ip", nil, "IP address of the webhook server (repeatable)")
	cmd.Flags().StringVar(&out, "out", "", "directory to write tls.crt, tls.key and ca.crt to")
	cmd.Flags().BoolVar(&force, "force", false, "replace existing files")
	return cmd
}
