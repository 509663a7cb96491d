package offline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/gatehouse-dev/gatehouse/admission/constraint"
	"github.com/gatehouse-dev/gatehouse/admission/externaldata"
	"github.com/gatehouse-dev/gatehouse/check"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/policytest"
)

// StubProviders makes each stub answer for its external data provider,
// by name, instead of the provider (see externaldata.System.Stub).
func (s *Session) StubProviders(stubs []policytest.ProviderStub) {
	for _, stub := range stubs {
		s.cp.Providers.Stub(stub.Provider, externaldata.Response{Idempotent: stub.Idempotent == nil || *stub.Idempotent, SystemError: stub.SystemError, Items: stub.Items})
	}
}

// RunPolicyTest runs a PolicyTest suite (Gatehouse's own format) against
// the session: its namespaces and the old objects of its UPDATE and DELETE
// cases are made first, then its policies are applied and awaited, then
// every case is sent through the admission chain with server-side dry-run,
// as its user, and its expectations checked. fsys holds the suite and its
// files; filter, when set, selects cases by "suite/case" name.
//
// One session runs one suite: policies are not taken back afterwards.
func (s *Session) RunPolicyTest(ctx context.Context, fsys fs.FS, t *policytest.PolicyTest, filter *regexp.Regexp) (res policytest.SuiteResult) {
	start := time.Now()
	name, _ := t.Metadata["name"].(string)
	if name == "" {
		name = strings.TrimSuffix(path.Base(t.Path), path.Ext(t.Path))
	}
	res = policytest.SuiteResult{Path: t.Path, Policies: map[string]bool{}}
	defer func() { res.Duration = time.Since(start) }()
	suiteFailed := func(err error) policytest.SuiteResult {
		res.Cases = append(res.Cases, policytest.CaseResult{Test: name, Failures: []string{err.Error()}, Duration: time.Since(start)})
		return res
	}
	if t.Skip {
		res.Cases = append(res.Cases, policytest.CaseResult{Test: name, Skipped: true})
		return res
	}
	dir := path.Dir(t.Path)

	type planned struct {
		c     policytest.PolicyCase
		input check.Input
	}
	var cases []planned
	labels := map[string]map[string]string{}
	for ns, l := range t.Namespaces {
		labels[ns] = maps.Clone(l)
	}
	var existing []check.Input
	oldByKey := map[string]*unstructured.Unstructured{}
	for _, c := range t.Cases {
		if filter != nil && !filter.MatchString(name+"/"+c.Name) {
			continue
		}
		if c.Skip {
			res.Cases = append(res.Cases, policytest.CaseResult{Test: name, Case: c.Name, Skipped: true})
			continue
		}
		in := check.Input{Source: t.Path + ": case " + c.Name}
		var err error
		if c.Object != nil {
			if in.Object, err = loadObject(fsys, dir, c.Object); err != nil {
				return suiteFailed(fmt.Errorf("case %s: object: %w", c.Name, err))
			}
		}
		if c.OldObject != nil {
			if in.Old, err = loadObject(fsys, dir, c.OldObject); err != nil {
				return suiteFailed(fmt.Errorf("case %s: oldObject: %w", c.Name, err))
			}
			key := objectKey(in.Old)
			if prev, ok := oldByKey[key]; ok && !equalObjects(prev, in.Old) {
				return suiteFailed(fmt.Errorf("case %s: oldObject %s: another case stores a different object under that name; one suite holds one stored version of each object", c.Name, key))
			}
			if _, ok := oldByKey[key]; !ok {
				oldByKey[key] = in.Old
				existing = append(existing, check.Input{Source: in.Source, Object: in.Old.DeepCopy()})
			}
		}
		if c.Op() == "DELETE" {
			in.Delete = true
			in.Object = in.Old
		}
		if c.UserInfo != nil {
			in.User, in.Groups = c.UserInfo.Username, c.UserInfo.Groups
		}
		if len(c.NamespaceLabels) > 0 {
			ns := in.Object.GetNamespace()
			if ns == "" {
				ns = "default"
			}
			if prev, ok := labels[ns]; ok && !maps.Equal(prev, c.NamespaceLabels) {
				return suiteFailed(fmt.Errorf("case %s: namespaceLabels: namespace %s has other labels in this suite (%v); give each set of labels its own namespace", c.Name, ns, prev))
			}
			labels[ns] = c.NamespaceLabels
		}
		cases = append(cases, planned{c: c, input: in})
	}

	checker, err := check.NewChecker(s.Admin(), check.Options{NamespaceLabels: labels})
	if err != nil {
		return suiteFailed(err)
	}
	inputs := make([]check.Input, len(cases))
	for i, p := range cases {
		inputs[i] = p.input
	}
	if err := checker.Prepare(ctx, inputs, existing); err != nil {
		return suiteFailed(fmt.Errorf("preparing: %w", err))
	}
	policyDir, loaded, err := s.stagePolicies(fsys, dir, t.Policies)
	if err != nil {
		return suiteFailed(err)
	}
	defer os.RemoveAll(policyDir)
	for _, p := range loaded {
		res.Policies[p] = false
	}
	// Stubs before the policies: a mutator or template may call its
	// provider as soon as it is in force.
	s.StubProviders(t.ExternalData)
	if err := s.ApplyPolicies(ctx, checker, policyDir); err != nil {
		return suiteFailed(fmt.Errorf("policies: %s", strings.ReplaceAll(err.Error(), policyDir+"/", "")))
	}

	for i, p := range cases {
		in := inputs[i]
		// Prepare pairs objects with stored ones by name; a case says
		// itself whether it updates.
		if p.c.OldObject == nil {
			in.Old = nil
		}
		r := checker.Check(ctx, in)
		out := policytest.Outcome{
			Allowed:  r.Verdict == check.Allowed || r.Verdict == check.Warned,
			Message:  r.Message,
			Warnings: r.Warnings,
		}
		if r.Produced != nil {
			out.Object = r.Produced.Object
		}
		cr := policytest.CaseResult{Test: name, Case: p.c.Name, Duration: r.Duration}
		if r.Verdict == check.Error {
			cr.Failures = append(cr.Failures, "not checked: "+r.Message)
		} else {
			cr.Failures = policytest.Evaluate(p.c.Expect, out)
		}
		for _, f := range r.Findings {
			cr.Violations = append(cr.Violations, fmt.Sprintf("%s  %s: %s", f.Action, f.Speaker(), f.Message))
			if _, ok := res.Policies[f.Kind+" "+f.Name]; ok {
				res.Policies[f.Kind+" "+f.Name] = true
			}
		}
		res.Cases = append(res.Cases, cr)
	}
	return res
}

// stagePolicies copies the policy files a suite names into one directory
// to apply, and lists the policies that can be seen speaking (validating
// policies, constraints, validating webhooks) for coverage.
func (s *Session) stagePolicies(fsys fs.FS, dir string, paths []string) (string, []string, error) {
	stage, err := os.MkdirTemp("", "gatehouse-policytest-")
	if err != nil {
		return "", nil, err
	}
	var names []string
	n := 0
	copyFile := func(name string) error {
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return fmt.Errorf("policies: %s: %w", name, unwrapPath(err))
		}
		n++
		if err := os.WriteFile(filepath.Join(stage, fmt.Sprintf("%03d-%s", n, path.Base(name))), data, 0o600); err != nil {
			return err
		}
		docs, _ := policies.ReadFile(name, data, policies.ForApply)
		for _, d := range docs {
			gvk := d.Object.GroupVersionKind()
			switch {
			case gvk.Kind == "ValidatingAdmissionPolicy":
				names = append(names, "ValidatingAdmissionPolicy "+d.Object.GetName())
			case gvk.Group == constraint.ConstraintsGroup:
				names = append(names, "Constraint "+d.Object.GetName())
			case gvk.Kind == "ValidatingWebhookConfiguration":
				hooks, _, _ := unstructured.NestedSlice(d.Object.Object, "webhooks")
				for _, h := range hooks {
					if m, ok := h.(map[string]any); ok {
						names = append(names, fmt.Sprintf("Webhook %v", m["name"]))
					}
				}
			}
		}
		return nil
	}
	for _, p := range paths {
		full := policytest.Resolve(dir, p)
		info, err := fs.Stat(fsys, full)
		if err != nil {
			os.RemoveAll(stage)
			return "", nil, fmt.Errorf("policies: %s: %w", full, unwrapPath(err))
		}
		if !info.IsDir() {
			if err := copyFile(full); err != nil {
				os.RemoveAll(stage)
				return "", nil, err
			}
			continue
		}
		err = fs.WalkDir(fsys, full, func(name string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !strings.HasSuffix(name, ".yaml") && !strings.HasSuffix(name, ".yml") && !strings.HasSuffix(name, ".json") {
				return nil
			}
			return copyFile(name)
		})
		if err != nil {
			os.RemoveAll(stage)
			return "", nil, fmt.Errorf("policies: %s: %w", full, unwrapPath(err))
		}
	}
	return stage, names, nil
}

// loadObject reads a case's object: a file holding exactly one, or the
// inline one.
func loadObject(fsys fs.FS, dir string, ref *policytest.ObjectRef) (*unstructured.Unstructured, error) {
	if ref.Inline != nil {
		u := &unstructured.Unstructured{Object: runtime.DeepCopyJSON(ref.Inline)}
		if u.GetAPIVersion() == "" || u.GetKind() == "" {
			return nil, errors.New("apiVersion and kind are required")
		}
		return u, nil
	}
	name := policytest.Resolve(dir, ref.File)
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, unwrapPath(err))
	}
	docs, derrs := policies.ReadFile(name, data, policies.ForCreate)
	if len(derrs) > 0 {
		return nil, derrs[0]
	}
	if len(docs) != 1 {
		return nil, fmt.Errorf("%s: holds %d objects, want exactly one", name, len(docs))
	}
	return docs[0].Object, nil
}

func objectKey(u *unstructured.Unstructured) string {
	gvk := u.GroupVersionKind()
	return gvk.Group + "/" + gvk.Kind + " " + u.GetNamespace() + "/" + u.GetName()
}

func equalObjects(a, b *unstructured.Unstructured) bool {
	x, _ := a.MarshalJSON()
	y, _ := b.MarshalJSON()
	return string(x) == string(y)
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
