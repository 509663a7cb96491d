package policytest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// GatorAPIVersion and SuiteKind identify a gator Suite.
const (
	GatorAPIVersion = "test.gatekeeper.sh/v1alpha1"
	SuiteKind       = "Suite"
)

// Suite is a gator verify suite: tests of one template and constraint each.
type Suite struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   map[string]any `json:"metadata,omitempty"`
	Tests      []Test         `json:"tests"`
	// Skip skips the whole suite.
	Skip bool `json:"skip,omitempty"`

	// Path is the suite's file in the FS it was found in; files it names
	// are relative to its directory.
	Path string `json:"-"`
}

// Test is a template, a constraint and cases for them.
type Test struct {
	Name       string `json:"name"`
	Template   string `json:"template"`
	Constraint string `json:"constraint"`
	// Expansion names a file of ExpansionTemplates (and the mutators that
	// shape what they expand into): each case's object is also reviewed as
	// the resources it expands into, as gator verify does.
	Expansion string  `json:"expansion,omitempty"`
	Cases     []*Case `json:"cases,omitempty"`
	// Invalid says the constraint must be refused by the template's schema.
	Invalid bool `json:"invalid,omitempty"`
	Skip    bool `json:"skip,omitempty"`
}

// Case is one object to review and what must come of it.
type Case struct {
	Name string `json:"name"`
	// Object is a file holding exactly one object, or an AdmissionReview.
	Object string `json:"object"`
	// Inventory are files of objects to put in data.inventory.
	Inventory  []string    `json:"inventory,omitempty"`
	Assertions []Assertion `json:"assertions"`
	Skip       bool        `json:"skip,omitempty"`
}

// Assertion counts the violations whose message matches Message (a
// regular expression; all when unset): "yes" (at least one, the default),
// "no", or exactly N.
type Assertion struct {
	Violations *intstr.IntOrString `json:"violations,omitempty"`
	Message    *string             `json:"message,omitempty"`
}

// Find returns the suites in paths (files or directories, walked
// recursively, hidden ones skipped) of fsys, in path order. A file named
// explicitly must be a suite. In directories, files that do not parse as
// YAML are skipped unless they look like suites; a file that is a suite
// but does not decode is an error naming it.
func Find(fsys fs.FS, paths []string) (*Found, error) {
	found := &Found{}
	var errs []error
	for _, p := range paths {
		info, err := fs.Stat(fsys, p)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, unwrapPath(err)))
			continue
		}
		if !info.IsDir() {
			errs = append(errs, readSuites(fsys, p, true, found))
			continue
		}
		err = fs.WalkDir(fsys, p, func(name string, d fs.DirEntry, err error) error {
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, unwrapPath(err)))
				return nil
			}
			if name != p && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			if d.IsDir() || !slices.Contains([]string{".yaml", ".yml"}, path.Ext(name)) {
				return nil
			}
			errs = append(errs, readSuites(fsys, name, false, found))
			return nil
		})
		errs = append(errs, err)
	}
	return found, errors.Join(errs...)
}

// Found are the suites Find found, of each format.
type Found struct {
	Suites      []*Suite
	PolicyTests []*PolicyTest
}

// Empty reports whether nothing was found.
func (f *Found) Empty() bool { return len(f.Suites) == 0 && len(f.PolicyTests) == 0 }

// Resolve is where the file p that a suite in dir names lives in the FS:
// relative to dir, or, when absolute, from the FS's root (gatehouse test
// roots it at /).
func Resolve(dir, p string) string {
	if path.IsAbs(p) {
		return strings.TrimPrefix(path.Clean(p), "/")
	}
	return path.Join(dir, p)
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// readSuites reads the suites of one file. must says the file was named
// explicitly, so it has to hold a suite.
//
// Suites are YAML 1.2, as gator reads them (go.yaml.in/yaml/v3): there
// `violations: yes` is the string "yes", where Kubernetes' YAML 1.1 reader
// would make it a boolean.
func readSuites(fsys fs.FS, name string, must bool, found *Found) error {
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return fmt.Errorf("%s: %w", name, unwrapPath(err))
	}
	looksLikeSuite := bytes.Contains(data, []byte(GatorAPIVersion)) || bytes.Contains(data, []byte(PolicyTestAPIVersion))
	n := 0
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if must || looksLikeSuite {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		}
		var doc any
		if err := node.Decode(&doc); err != nil {
			return fmt.Errorf("%s:%d: %w", name, node.Line, err)
		}
		m, ok := jsonCompatible(doc).(map[string]any)
		if !ok {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		switch {
		case u.GetAPIVersion() == GatorAPIVersion && u.GetKind() == SuiteKind:
			s, err := decodeSuite(u)
			if err != nil {
				return fmt.Errorf("%s:%d: %s %s: %w", name, node.Line, SuiteKind, u.GetName(), err)
			}
			s.Path = name
			found.Suites = append(found.Suites, s)
			n++
		case u.GetAPIVersion() == PolicyTestAPIVersion && u.GetKind() == PolicyTestKind:
			t, err := decodePolicyTest(u)
			if err != nil {
				return fmt.Errorf("%s:%d: %s %s: %w", name, node.Line, PolicyTestKind, u.GetName(), err)
			}
			t.Path = name
			found.PolicyTests = append(found.PolicyTests, t)
			n++
		}
	}
	if must && n == 0 {
		return fmt.Errorf("%s: no %s (apiVersion %s) or %s (apiVersion %s) in it", name, SuiteKind, GatorAPIVersion, PolicyTestKind, PolicyTestAPIVersion)
	}
	return nil
}

// jsonCompatible turns what yaml.v3 decodes into the values JSON decoding
// gives (map[string]any, []any, int64, float64, string, bool, nil).
func jsonCompatible(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = jsonCompatible(e)
		}
		return v
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[fmt.Sprint(k)] = jsonCompatible(e)
		}
		return m
	case []any:
		for i, e := range v {
			v[i] = jsonCompatible(e)
		}
		return v
	case int:
		return int64(v)
	case uint64:
		return int64(v)
	}
	return v
}

// decodeSuite decodes strictly, so a misspelled field is an error instead
// of a test that checks nothing.
func decodeSuite(u *unstructured.Unstructured) (*Suite, error) {
	s := &Suite{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, s, true); err != nil {
		return nil, err
	}
	for i, t := range s.Tests {
		if t.Name == "" {
			return nil, fmt.Errorf("tests[%d].name: Required value", i)
		}
		for j, c := range t.Cases {
			if c == nil {
				return nil, fmt.Errorf("tests[%d].cases[%d]: empty case", i, j)
			}
			for k, a := range c.Assertions {
				if err := a.validate(); err != nil {
					return nil, fmt.Errorf("tests[%d].cases[%d].assertions[%d]: %w", i, j, k, err)
				}
			}
		}
	}
	return s, nil
}

func (a Assertion) validate() error {
	if a.Violations != nil {
		switch a.Violations.Type {
		case intstr.Int:
			if a.Violations.IntVal < 0 {
				return fmt.Errorf("violations: %d: must be a nonnegative integer, yes or no", a.Violations.IntVal)
			}
		case intstr.String:
			if a.Violations.StrVal != "yes" && a.Violations.StrVal != "no" {
				return fmt.Errorf("violations: %q: must be a nonnegative integer, yes or no", a.Violations.StrVal)
			}
		}
	}
	if a.Message != nil {
		if _, err := compileMessage(*a.Message); err != nil {
			return fmt.Errorf("message: %w", err)
		}
	}
	return nil
}
