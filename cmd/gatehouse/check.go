package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/gatehouse-dev/gatehouse/check"
	"github.com/gatehouse-dev/gatehouse/offline"
	"github.com/gatehouse-dev/gatehouse/policytest"
	"github.com/gatehouse-dev/gatehouse/webhooks"
)

func newCheckCommand() *cobra.Command {
	var (
		files, existing, nsLabels, apiserverArgs []string
		policyDir, format, stubs, providerStubs  string
		showMutations                            bool
		verbosity                                int
	)
	cmd := &cobra.Command{
		Use:   "check -f PATH... [--policies DIR]",
		Short: "Dry-run objects through the admission chain with your policies, offline",
		Long: `Start an ephemeral control plane (temporary storage, loopback only, no node),
apply the policies in --policies (ValidatingAdmissionPolicies and
MutatingAdmissionPolicies with their bindings and params, Gatekeeper
ConstraintTemplates and constraints, webhook configurations, CRDs), and send
every object of -f through server-side dry-run, as
'kubectl apply --dry-run=server' would against a cluster with those policies.

Objects are created; an object that --existing also holds (same kind,
namespace and name) is checked as an update of it. The namespaces the objects
name are created first, with the labels --namespace-labels gives, so
namespaceSelectors select as in the cluster. A Namespace among the objects
is checked first and then made as written, so objects in it are checked
with its labels.

For each object: ALLOWED, WARNED (allowed with warnings), DENIED, INVALID
(refused by the API's own validation) or ERROR (not checked), with every
policy, binding, constraint or webhook that spoke. --show-mutations adds the
diff your policies' mutations made (against the same object without them).

Exit status: 0 when everything is allowed, 1 when anything is denied,
invalid or not checked, 2 for usage or input errors (malformed YAML, unknown
kinds, policies that do not load).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return usageErrorf("-f: give at least one file, directory or - for stdin")
			}
			if !slices.Contains(check.Formats, format) {
				return usageErrorf("--output %q: must be one of %s", format, strings.Join(check.Formats, ", "))
			}
			labels, err := parseNamespaceLabels(nsLabels)
			if err != nil {
				return err
			}
			if policyDir != "" {
				if info, err := os.Stat(policyDir); err != nil || !info.IsDir() {
					return usageErrorf("--policies %s: not a directory", policyDir)
				}
			}
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			return runCheck(ctx, cmd, checkRun{
				files: files, existing: existing, policies: policyDir, format: format,
				opts:          check.Options{NamespaceLabels: labels, ShowMutations: showMutations},
				apiserverArgs: apiserverArgs, verbosity: verbosity, stubs: stubs, providerStubs: providerStubs,
			})
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file or directory of objects to check, or - for stdin (repeatable)")
	cmd.Flags().StringVar(&policyDir, "policies", "", "directory of policies to apply first")
	cmd.Flags().StringArrayVar(&existing, "existing", nil, "file or directory of objects that exist already: matching objects are checked as updates of them (repeatable)")
	cmd.Flags().StringArrayVar(&nsLabels, "namespace-labels", nil, "labels of a namespace the objects use, as NS=key=value,key=value (repeatable)")
	cmd.Flags().BoolVar(&showMutations, "show-mutations", false, "show the diff the policies' mutations made to each object")
	cmd.Flags().StringVarP(&format, "output", "o", "table", "output format: "+strings.Join(check.Formats, ", "))
	cmd.Flags().StringArrayVar(&apiserverArgs, "kube-apiserver-arg", nil, "extra kube-apiserver flag for the ephemeral control plane, as key=value (repeatable)")
	cmd.Flags().IntVarP(&verbosity, "v", "v", 0, "log verbosity of the upstream components in the log file")
	cmd.Flags().StringVar(&providerStubs, "stub-providers", "", "file of canned answers of Gatekeeper external data providers (a list of {provider, items: [{key, value|error}], systemError, idempotent}, as a PolicyTest's externalData): each answers for its provider by name instead of the provider")
	cmd.Flags().StringVar(&stubs, "stub-webhooks", "", "file of recorded webhook calls ('gatehouse webhook log -o json'): every webhook with a recorded call is answered with its last recorded answer instead of being called")
	return cmd
}

type checkRun struct {
	files, existing []string
	policies        string
	format          string
	opts            check.Options
	apiserverArgs   []string
	verbosity       int
	stubs           string
	providerStubs   string
}

func runCheck(ctx context.Context, cmd *cobra.Command, r checkRun) error {
	inputs, err := check.ReadPaths(r.files, cmd.InOrStdin())
	if err != nil {
		return usageError{err}
	}
	var old []check.Input
	if len(r.existing) > 0 {
		if old, err = check.ReadPaths(r.existing, strings.NewReader("")); err != nil {
			return usageError{fmt.Errorf("--existing: %w", err)}
		}
	}

	if r.stubs != "" {
		if _, err := webhooks.ReadExchangesFile(r.stubs); err != nil {
			return usageErrorf("--stub-webhooks: %v", err)
		}
	}
	var providerStubs []policytest.ProviderStub
	if r.providerStubs != "" {
		data, err := os.ReadFile(r.providerStubs)
		if err == nil {
			providerStubs, err = policytest.ParseProviderStubs(data)
		}
		if err != nil {
			return usageErrorf("--stub-providers %s: %v", r.providerStubs, err)
		}
	}
	session, _, err := startOffline(ctx, cmd.ErrOrStderr(), r.verbosity, r.apiserverArgs, r.stubs)
	if err != nil {
		return err
	}
	failed := true // until the checks ran: keep the log for the user
	defer func() {
		if !failed {
			session.Close()
		}
	}()
	session.StubProviders(providerStubs)
	err = checkWith(ctx, cmd, session, inputs, old, r)
	var ue usageError
	if err == nil || errors.As(err, &ue) || errors.As(err, new(failedError)) {
		failed = false
		return err
	}
	return fmt.Errorf("%w (log: %s)", err, session.CloseKeepingLog())
}

// checkWith runs the checks against a started session.
func checkWith(ctx context.Context, cmd *cobra.Command, session *offline.Session, inputs, old []check.Input, r checkRun) error {

	if traces := session.Traces(); traces != nil {
		r.opts.Explain = traces.ByTag
	}
	checker, err := check.NewChecker(session.Admin(), r.opts)
	if err != nil {
		return err
	}
	if err := checker.Prepare(ctx, inputs, old); err != nil {
		return usageError{err}
	}
	if unknown := checker.UnknownKinds(inputs); len(unknown) > 0 && r.policies == "" {
		return usageError{errors.Join(unknown...)}
	}
	checker.Baseline(ctx, inputs)
	if r.policies != "" {
		if err := session.ApplyPolicies(ctx, checker, r.policies); err != nil {
			var pe *offline.PolicyError
			if errors.As(err, &pe) {
				return usageError{fmt.Errorf("--policies: %w", err)}
			}
			return err
		}
		// Policies may define the kinds of the objects (CRDs).
		if unknown := checker.UnknownKinds(inputs); len(unknown) > 0 {
			return usageError{errors.Join(unknown...)}
		}
	}
	results := checker.Run(ctx, inputs)
	if err := check.Write(cmd.OutOrStdout(), r.format, results); err != nil {
		return err
	}
	if !check.Summarize(results).Passed() {
		return failedError{}
	}
	return nil
}

// startOffline starts the ephemeral control plane, with the upstream
// components' log in its directory and only Gatehouse's warnings on the
// terminal.
func startOffline(ctx context.Context, stderr io.Writer, verbosity int, apiserverArgs []string, stubs string) (*offline.Session, string, error) {
	dir, err := os.MkdirTemp("", "gatehouse-offline-")
	if err != nil {
		return nil, "", fmt.Errorf("temporary directory: %w", err)
	}
	logger, logPath, err := setupLogging(dir+"/logs", verbosity, stderr, slog.LevelWarn)
	if err != nil {
		return nil, "", err
	}
	session, err := offline.Start(ctx, offline.Options{Dir: dir, Logger: logger, APIServerArgs: apiserverArgs, WebhookStubs: stubs})
	if err != nil {
		return nil, "", err
	}
	return session, logPath, nil
}

// parseNamespaceLabels reads NS=key=value,key=value flags.
func parseNamespaceLabels(values []string) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	for _, v := range values {
		ns, rest, ok := strings.Cut(v, "=")
		if !ok || ns == "" {
			return nil, usageErrorf("--namespace-labels %q: want NS=key=value,key=value", v)
		}
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return nil, usageErrorf("--namespace-labels %q: namespace %q: %s", v, ns, strings.Join(errs, "; "))
		}
		if out[ns] == nil {
			out[ns] = map[string]string{}
		}
		for pair := range strings.SplitSeq(rest, ",") {
			if pair == "" {
				continue
			}
			key, value, ok := strings.Cut(pair, "=")
			if !ok {
				return nil, usageErrorf("--namespace-labels %q: label %q: want key=value", v, pair)
			}
			if errs := validation.IsQualifiedName(key); len(errs) > 0 {
				return nil, usageErrorf("--namespace-labels %q: label key %q: %s", v, key, strings.Join(errs, "; "))
			}
			if errs := validation.IsValidLabelValue(value); len(errs) > 0 {
				return nil, usageErrorf("--namespace-labels %q: label %q: %s", v, key, strings.Join(errs, "; "))
			}
			out[ns][key] = value
		}
	}
	return out, nil
}
