package check

import (
	"regexp"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// serverFields are written by the API server to every stored object; they
// are not mutations.
var serverFields = [][]string{
	{"metadata", "uid"}, {"metadata", "resourceVersion"}, {"metadata", "creationTimestamp"},
	{"metadata", "generation"}, {"metadata", "managedFields"},
}

// generatedNames are names upstream plugins make up afresh for every
// request, so they differ between any two dry-runs of one object: the
// projected service-account token volume of the ServiceAccount plugin.
var generatedNames = regexp.MustCompile(`\bkube-api-access-[a-z0-9]{5}\b`)

// mutationDiff is a unified diff of before and after as YAML, without the
// fields the API server sets on every object. Empty when nothing changed.
func mutationDiff(before, after *unstructured.Unstructured) string {
	a, b := objectLines(before), objectLines(after)
	if a == b {
		return ""
	}
	diff, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(a), B: difflib.SplitLines(b),
		FromFile: "without policies", ToFile: "with policies", Context: 2,
	})
	if err != nil {
		return err.Error()
	}
	return diff
}

func objectLines(u *unstructured.Unstructured) string {
	if u == nil {
		return ""
	}
	u = u.DeepCopy()
	for _, f := range serverFields {
		unstructured.RemoveNestedField(u.Object, f...)
	}
	if m, ok := u.Object["metadata"].(map[string]any); ok && len(m) == 0 {
		delete(u.Object, "metadata")
	}
	if u.GetGenerateName() != "" {
		u.SetName(u.GetGenerateName() + "*") // made up per request too
	}
	out, err := yaml.Marshal(u.Object)
	if err != nil {
		return err.Error()
	}
	return generatedNames.ReplaceAllString(strings.TrimSpace(string(out)), "kube-api-access-*") + "\n"
}
