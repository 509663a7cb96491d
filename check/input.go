package check

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gatehouse-dev/gatehouse/policies"
)

// Input is one object to check, and where it came from.
type Input struct {
	// Source is file:line of the document that held it ("-" is stdin).
	Source string
	Object *unstructured.Unstructured
	// Old, when set, is the stored object the check updates (from
	// --existing); the check is then an UPDATE instead of a CREATE.
	Old *unstructured.Unstructured
	// Delete makes the check a DELETE of Old.
	Delete bool
	// User and Groups, when User is set, are who sends the request
	// (impersonated).
	User   string
	Groups []string
}

// InputError is input that cannot be checked: a file that cannot be read,
// malformed YAML, an object without apiVersion, kind or name.
type InputError struct{ Errs []error }

func (e *InputError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "\n")
}

// ReadPaths reads the objects of every path: a file, a directory (its
// .yaml, .yml and .json files, recursively, hidden ones skipped) or "-"
// for stdin. Every problem is collected; the error is an *InputError.
func ReadPaths(paths []string, stdin io.Reader) ([]Input, error) {
	var inputs []Input
	var errs []error
	add := func(docs []policies.Document, derrs []*policies.DocumentError) {
		for _, d := range docs {
			inputs = append(inputs, Input{Source: fmt.Sprintf("%s:%d", d.File, d.Line), Object: d.Object})
		}
		for _, e := range derrs {
			errs = append(errs, e)
		}
	}
	for _, p := range paths {
		if p == "-" {
			data, err := io.ReadAll(stdin)
			if err != nil {
				errs = append(errs, fmt.Errorf("reading stdin: %w", err))
				continue
			}
			add(policies.ReadFile("-", data, policies.ForCreate))
			continue
		}
		info, err := os.Stat(p)
		if err != nil {
			errs = append(errs, pathError(p, err))
			continue
		}
		if !info.IsDir() {
			data, err := os.ReadFile(p)
			if err != nil {
				errs = append(errs, pathError(p, err))
				continue
			}
			add(policies.ReadFile(p, data, policies.ForCreate))
			continue
		}
		err = filepath.WalkDir(p, func(name string, d fs.DirEntry, err error) error {
			if err != nil {
				errs = append(errs, pathError(name, err))
				return nil
			}
			if name != p && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			if d.IsDir() || !slices.Contains([]string{".yaml", ".yml", ".json"}, filepath.Ext(name)) {
				return nil
			}
			data, err := os.ReadFile(name)
			if err != nil {
				errs = append(errs, pathError(name, err))
				return nil
			}
			add(policies.ReadFile(name, data, policies.ForCreate))
			return nil
		})
		if err != nil {
			errs = append(errs, pathError(p, err))
		}
	}
	if len(errs) > 0 {
		return inputs, &InputError{Errs: errs}
	}
	return inputs, nil
}

// pathError names the path once, without Go's "open" or "stat" prefix.
func pathError(name string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%s: %w", name, err)
}

// objectKey identifies an object across inputs and existing objects.
func objectKey(u *unstructured.Unstructured) string {
	gvk := u.GroupVersionKind()
	return gvk.Group + "/" + gvk.Kind + "/" + u.GetNamespace() + "/" + u.GetName()
}
