package offline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	"github.com/gatehouse-dev/gatehouse/admission/constraint"
	"github.com/gatehouse-dev/gatehouse/admission/expansion"
	"github.com/gatehouse-dev/gatehouse/admission/externaldata"
	"github.com/gatehouse-dev/gatehouse/admission/mutation"
	"github.com/gatehouse-dev/gatehouse/admission/trace"
	"github.com/gatehouse-dev/gatehouse/check"
	"github.com/gatehouse-dev/gatehouse/config"
	"github.com/gatehouse-dev/gatehouse/controlplane"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// Options configure a Session.
type Options struct {
	// Dir is the ephemeral control plane's directory (removed by Close);
	// empty means a new temporary one.
	Dir    string
	Logger *slog.Logger
	// APIServerArgs are extra kube-apiserver flags.
	APIServerArgs []string
	// WebhookStubs is a file of recorded webhook calls whose last answers
	// stand in for their webhooks (see webhooks.Stubs).
	WebhookStubs string
}

// Session is an ephemeral control plane for offline checks.
type Session struct {
	cp *controlplane.ControlPlane
	// Started is how long the control plane took to become ready.
	Started time.Duration
}

// Start starts the control plane.
func Start(ctx context.Context, opts Options) (*Session, error) {
	begin := time.Now()
	dir := opts.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "gatehouse-offline-")
		if err != nil {
			return nil, fmt.Errorf("temporary directory: %w", err)
		}
		dir = d
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cp, err := controlplane.StartEphemeral(ctx, dir, logger, opts.APIServerArgs, func(c *config.Config) { c.WebhookStubs = opts.WebhookStubs })
	if err != nil {
		return nil, fmt.Errorf("starting the ephemeral control plane: %w", err)
	}
	s := &Session{cp: cp, Started: time.Since(begin)}
	logger.Debug("ephemeral control plane ready", "after", s.Started)
	return s, nil
}

// Admin is a client config with full rights on the control plane.
func (s *Session) Admin() *rest.Config { return s.cp.Admin }

// Traces are the admission traces of the session's requests (nil when
// tracing is off).
func (s *Session) Traces() *trace.Recorder { return s.cp.Traces }

// Constraints is the Gatekeeper engine the admission chain evaluates.
func (s *Session) Constraints() *constraint.Engine { return s.cp.Constraints }

// Close stops the control plane and removes its files.
func (s *Session) Close() { s.cp.Close() }

// CloseKeepingLog stops the control plane and removes its files except
// its log, for a user to read after a failure; it returns the log's path.
func (s *Session) CloseKeepingLog() string { return s.cp.CloseKeepingLog() }

// PolicyError is a policy that could not be put in force: its file and
// document, and why (a document that does not decode, a template that does
// not compile, an object the API server refuses).
type PolicyError struct{ Errs []error }

func (e *PolicyError) Error() string {
	return errors.Join(e.Errs...).Error()
}

// ApplyPolicies applies every policy file under dir (see policies.Applier)
// and returns once all of them are in force. Templates are compiled first,
// so one that does not compile is reported by name with its errors rather
// than found missing later.
func (s *Session) ApplyPolicies(ctx context.Context, checker *check.Checker, dir string) error {
	docs, derrs := policies.Load(os.DirFS(dir))
	var errs []error
	for _, e := range derrs {
		errs = append(errs, prefixed(dir, e))
	}
	gatekeeper := false
	for _, d := range docs {
		if strings.HasSuffix(d.Object.GroupVersionKind().Group, ".gatekeeper.sh") {
			gatekeeper = true
		}
	}
	if gatekeeper {
		if err := s.cp.StartGatekeeper(); err != nil {
			return err
		}
	}
	kinds := map[string]bool{}
	constraints := map[string][]string{}
	// What Gatehouse's own syncers load a moment after it is stored, in
	// groups waited for one after the other.
	var config, templates, mutators, providers []pending
	for _, d := range docs {
		gvk := d.Object.GroupVersionKind()
		kinds[gvk.Kind] = true
		switch gvk.Group {
		case expansion.Group:
			name := d.Object.GetName()
			templates = append(templates, pending{"ExpansionTemplate " + name, func() bool { return s.cp.Expansions.Has(name) }})
		case constraint.ConfigGroup:
			if gvk.Kind == "Config" && d.Object.GetNamespace() == constraint.GatekeeperNamespace && d.Object.GetName() == constraint.ConfigName {
				config = append(config, pending{"Config " + constraint.GatekeeperNamespace + "/" + constraint.ConfigName, func() bool { return s.cp.Constraints.Exclusions() != nil }})
			}
		case constraint.TemplateGVR.Group:
			t, err := constraint.ParseTemplate(d.Object)
			if err == nil {
				err = s.cp.Constraints.Check(t.Source())
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s/%s: document %d: ConstraintTemplate %s: %w", dir, d.File, d.Index, d.Object.GetName(), err))
			}
		case constraint.ConstraintsGroup:
			constraints[gvk.Kind] = append(constraints[gvk.Kind], d.Object.GetName())
		case externaldata.Group:
			name := d.Object.GetName()
			providers = append(providers, pending{"Provider " + name, func() bool { return s.cp.Providers.Has(name) }})
		case mutation.Group:
			kind, name := gvk.Kind, d.Object.GetName()
			mutators = append(mutators, pending{"mutator " + kind + " " + name, func() bool { return s.cp.Mutators.Has(kind, name) }})
		}
	}
	if len(errs) > 0 {
		return &PolicyError{Errs: errs}
	}
	applier, err := policies.NewApplier(s.cp.Admin, dir, nil)
	if err != nil {
		return err
	}
	res := applier.Apply(ctx)
	for _, e := range res.Errors {
		errs = append(errs, prefixed(dir, e))
	}
	if len(errs) > 0 {
		return &PolicyError{Errs: errs}
	}
	if err := checker.WaitInForce(ctx, slices.Collect(maps.Keys(kinds))); err != nil {
		return err
	}
	if err := check.WaitConstraints(ctx, constraints, s.cp.Constraints.ConstraintNames); err != nil {
		return err
	}
	for _, group := range [][]pending{config, templates, mutators, providers} {
		if err := waitLoaded(ctx, group); err != nil {
			return err
		}
	}
	return nil
}

// pending is a policy that one of Gatehouse's syncers loads a moment after
// it is stored: what it is, and whether it is in force yet.
type pending struct {
	what   string
	loaded func() bool
}

// waitLoaded returns once every one of group is loaded, or fails after
// 30 s naming the first that is not.
func waitLoaded(ctx context.Context, group []pending) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, p := range group {
		for !p.loaded() {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s was not loaded: %w", p.what, ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}

// prefixed names a policy file by its path, not relative to dir.
func prefixed(dir string, e *policies.DocumentError) error {
	if e.File == dir {
		return e
	}
	c := *e
	c.File = dir + "/" + e.File
	return &c
}
