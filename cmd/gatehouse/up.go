package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	logsapi "k8s.io/component-base/logs/api/v1"

	"github.com/gatehouse-dev/gatehouse/config"
	"github.com/gatehouse-dev/gatehouse/controlplane"
	"github.com/gatehouse-dev/gatehouse/kubelet/node"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// shutdownGrace bounds a clean stop; past it the process exits anyway.
const shutdownGrace = 10 * time.Second

// policyRescan is how often --policies is checked for changed files.
const policyRescan = 2 * time.Second

func newUpCommand() *cobra.Command {
	flagValues := config.Default()
	var configPath string
	var verbosity int
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run etcd, kube-apiserver, kube-controller-manager, kube-scheduler and a node agent in this process",
		Long: `Run a complete Kubernetes control plane in this process: embedded etcd (or
--etcd-servers), and upstream kube-apiserver, kube-controller-manager and
kube-scheduler, configured like a kubeadm cluster, and a node agent that runs
the admitted pods (on containerd, started as a child, when it is installed;
--node=false for a control plane alone). When everything is ready it prints a
line with "ready", the kubeconfig path and the time it took.

Settings come from --config (a gatehouse.yaml, apiVersion gatehouse.dev/v1alpha1,
kind Config) and flags; a flag given on the command line wins over the file.
Upstream components' logs go to <data-dir>/logs/gatehouse.log.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Resolve(cmd.Flags(), flagValues, configPath)
			if err != nil {
				return usageError{err}
			}
			if err := cfg.Validate(); err != nil {
				return usageErrorf("invalid configuration: %w", err)
			}
			return up(cmd, cfg, verbosity)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "path to a gatehouse.yaml config file (flags override it)")
	cmd.Flags().IntVarP(&verbosity, "v", "v", 0, "log verbosity of the upstream components in the log file")
	config.AddFlags(cmd.Flags(), flagValues)
	return cmd
}

func up(cmd *cobra.Command, cfg *config.Config, verbosity int) error {
	start := time.Now()
	layout := controlplane.Layout{DataDir: cfg.DataDir}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir %s is not writable: %w", cfg.DataDir, err)
	}
	logger, logPath, err := setupLogging(layout.LogDir(), verbosity, cmd.ErrOrStderr(), slog.LevelInfo)
	if err != nil {
		return fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	// Several upstream components apply the logging configuration in one
	// process; accept the identical second application instead of failing.
	logsapi.ReapplyHandling = logsapi.ReapplyHandlingIgnoreUnchanged

	ctx, cancel := signalContext(logger)
	defer cancel()

	logger.Info("starting gatehouse", "dataDir", cfg.DataDir, "log", logPath)
	cp, err := controlplane.Start(ctx, cfg, logger)
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted during start
		}
		return fmt.Errorf("%w (details in %s)", err, logPath)
	}

	if cfg.Policies != "" {
		applier, err := policies.NewApplier(cp.Admin, cfg.Policies, logger)
		if err != nil {
			cancel()
			cp.Wait()
			return err
		}
		// The first pass runs before "ready", so a user who sees ready can
		// rely on the directory's policies being in force.
		applier.Start(ctx, policyRescan)
	}

	var localNode *node.Node
	if cfg.NodeEnabled() {
		notice := func(line string) { fmt.Fprintln(cmd.ErrOrStderr(), line) }
		localNode, err = startLocalNode(ctx, cfg, cp, logger, notice)
		if err != nil {
			cancel()
			cp.Wait()
			if ctx.Err() != nil && localNode == nil && errors.Is(err, context.Canceled) {
				return nil
			}
			return fmt.Errorf("%w (details in %s)", err, logPath)
		}
	}

	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "gatehouse ready in %.1fs, kubeconfig: %s\n", time.Since(start).Seconds(), cp.Kubeconfig)
	fmt.Fprintf(out, "export KUBECONFIG=%s\n", cp.Kubeconfig)

	err = cp.Wait()
	if localNode != nil {
		if nodeErr := localNode.Wait(); nodeErr != nil && err == nil {
			err = nodeErr
		}
	}
	if err != nil {
		return fmt.Errorf("%w (details in %s)", err, logPath)
	}
	logger.Info("gatehouse stopped")
	return nil
}

// signalContext is cancelled on SIGINT or SIGTERM; a second signal, or a
// shutdown longer than shutdownGrace, exits at once.
func signalContext(logger *slog.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		var sig os.Signal
		select {
		case sig = <-signals:
		case <-ctx.Done():
			signal.Stop(signals)
			return
		}
		logger.Info("shutting down", "signal", sig.String(), "grace", shutdownGrace)
		cancel()
		select {
		case <-signals:
			logger.Warn("second signal: exiting now")
		case <-time.After(shutdownGrace):
			logger.Warn("shutdown took too long: exiting now", "grace", shutdownGrace)
		}
		os.Exit(exitFailed)
	}()
	return ctx, cancel
}
