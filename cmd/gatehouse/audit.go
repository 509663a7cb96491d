package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/gatehouse-dev/gatehouse/admission/constraint"
	"github.com/gatehouse-dev/gatehouse/admission/externaldata"
	"github.com/gatehouse-dev/gatehouse/controlplane"
	"github.com/gatehouse-dev/gatehouse/controlplane/pki"
)

// auditOutput is one constraint in -o json and -o yaml.
type auditOutput struct {
	Kind              string                      `json:"kind"`
	Name              string                      `json:"name"`
	EnforcementAction string                      `json:"enforcementAction"`
	AuditActions      []string                    `json:"auditActions"`
	AuditTimestamp    string                      `json:"auditTimestamp"`
	TotalViolations   int                         `json:"totalViolations"`
	Violations        []constraint.AuditViolation `json:"violations"`
}

func newAuditCommand() *cobra.Command {
	var (
		out         outputFlag
		cluster     clusterFlags
		writeStatus bool
		limit       uint
	)
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Check the cluster's existing objects against its Gatekeeper constraints",
		Long: `Run one pass of Gatekeeper's audit against a running Gatehouse (or any cluster
with Gatekeeper's templates and constraints): list the objects of every kind
the constraints select, review each one as an existing object, and print each
constraint's violations, of every enforcement action (deny, warn, dryrun).

The cluster is the Gatehouse in --data-dir, or the one --kubeconfig names. Without
either flag, $KUBECONFIG is used when set, and the default --data-dir otherwise.

With --write-status the results are also written to the constraints' status
(auditTimestamp, totalViolations, violations), as 'gatehouse up' does every
--audit-interval.

Exit status: 0 when no constraint whose action at audit is deny has a
violation, 1 when one has (or the audit could not finish), 2 on usage errors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			cfg, err := cluster.restConfig(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			// Templates that call external_data ask the cluster's
			// Providers, offering the local Gatehouse's client
			// certificate, as its own audit does.
			var providerClient externaldata.Client
			if dir, ok := cluster.gatehouseDataDir(cmd); ok {
				if cert, err := pki.LoadExternalDataClient(controlplane.Layout{DataDir: dir}.PKIDir()); err == nil {
					providerClient.Certificate = func() (*tls.Certificate, error) { return cert, nil }
				}
			}
			return audit(ctx, cmd, cfg, &providerClient, &out, writeStatus, int(limit))
		},
	}
	cluster.add(cmd)
	cmd.Flags().BoolVar(&writeStatus, "write-status", false, "also write the results to the constraints' status")
	cmd.Flags().UintVar(&limit, "constraint-violations-limit", constraint.DefaultViolationsLimit, "violations listed per constraint (all are counted)")
	out.add(cmd)
	return cmd
}

func audit(ctx context.Context, cmd *cobra.Command, cfg *rest.Config, providerClient *externaldata.Client, out *outputFlag, writeStatus bool, limit int) error {
	// Warnings (a template that does not compile, a constraint not in
	// force) go to stderr; results to stdout.
	logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn, ReplaceAttr: dropTime}))

	// The same engine and syncers as the server's.
	engine := constraint.NewEngine(0)
	providers := externaldata.NewSystem(providerClient, externaldata.DefaultCacheTTL)
	engine.SetExternalData(providers)
	providerSyncer := externaldata.NewSyncer(cfg, providers, logger)
	providerSyncer.ReadOnly = true
	if err := providerSyncer.Start(ctx); err != nil {
		// A cluster without external data: templates that call it say
		// the provider is unknown, as Gatekeeper's would.
		logger.Warn("external data Providers not read", "error", err)
	}
	syncer, err := constraint.NewSyncer(cfg, engine, logger)
	if err != nil {
		return err
	}
	// The audit reads the cluster's policies; the cluster's own control
	// plane (Gatehouse or Gatekeeper) owns their CRDs and status.
	syncer.ReadOnly = true
	// Start returns once the templates are compiled and their constraints
	// loaded.
	if err := syncer.Start(ctx); err != nil {
		return fmt.Errorf("loading templates and constraints from %s: %w", cfg.Host, err)
	}
	auditor, err := constraint.NewAuditor(cfg, engine, syncer.Namespace, logger)
	if err != nil {
		return err
	}
	auditor.Limit = limit
	results, auditErr := auditor.Audit(ctx)
	if results == nil && auditErr != nil {
		return fmt.Errorf("audit: %w", auditErr)
	}
	if writeStatus {
		if err := auditor.WriteStatus(ctx, results); err != nil {
			auditErr = errors.Join(auditErr, err)
		}
	}

	if err := out.print(cmd.OutOrStdout(), auditOutputs(results), func(w io.Writer) error { return auditTable(w, results) }); err != nil {
		return err
	}
	if auditErr != nil {
		return fmt.Errorf("the audit is incomplete: %w", auditErr)
	}
	for i := range results {
		if results[i].Denies() {
			return failedError{}
		}
	}
	return nil
}

func auditOutputs(results []constraint.AuditResult) []auditOutput {
	outs := make([]auditOutput, 0, len(results))
	for _, r := range results {
		actions := r.Actions
		if actions == nil {
			actions = []string{}
		}
		outs = append(outs, auditOutput{
			Kind:              r.Constraint.Kind,
			Name:              r.Constraint.Name,
			EnforcementAction: r.EnforcementAction,
			AuditActions:      actions,
			AuditTimestamp:    r.Timestamp.UTC().Format(time.RFC3339),
			TotalViolations:   r.Total,
			Violations:        r.Violations,
		})
	}
	return outs
}

// auditTable prints one row per constraint and, under it, one line per
// violation kept.
func auditTable(w io.Writer, results []constraint.AuditResult) error {
	if len(results) == 0 {
		printf(w, "No constraints in force.\n")
		return nil
	}
	// Align the constraint rows as one table, then put each one's
	// violations under it.
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	printf(tw, "CONSTRAINT KIND\tNAME\tACTION\tTOTAL\n")
	for _, r := range results {
		printf(tw, "%s\t%s\t%s\t%d\n", r.Constraint.Kind, r.Constraint.Name, auditAction(&r), r.Total)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	rows := strings.SplitAfter(buf.String(), "\n")
	printf(w, "%s", rows[0])
	for i, r := range results {
		printf(w, "%s", rows[i+1])
		for _, v := range r.Violations {
			name := v.Name
			if v.Namespace != "" {
				name = v.Namespace + "/" + v.Name
			}
			printf(w, "    %s %s: %s\n", name, v.Kind, oneLine(v.Message))
		}
		if more := r.Total - len(r.Violations); more > 0 {
			printf(w, "    ... and %d more (--constraint-violations-limit)\n", more)
		}
	}
	return nil
}

// auditAction is the ACTION column: the enforcement action, and for a
// scoped constraint its actions at audit ("-": not audited).
func auditAction(r *constraint.AuditResult) string {
	if r.EnforcementAction != constraint.ActionScoped {
		return r.EnforcementAction
	}
	if len(r.Actions) == 0 {
		return "scoped:-"
	}
	return "scoped:" + strings.Join(r.Actions, ",")
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
