package constraint

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestByPodStatusWritesOnlyChanges(t *testing.T) {
	w := NewByPodStatus(nil, nil)
	defer w.queue.ShutDown()
	obj := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"name": "c", "generation": int64(2), "uid": "u1"},
		// As the informer has it after a write: numbers decoded as int64.
		"status": map[string]any{"byPod": []any{map[string]any{
			"id": "gatehouse", "constraintUID": "u1", "enforced": true, "observedGeneration": int64(2), "operations": []any{"audit", "webhook"},
		}}},
	}}
	gvr := ConstraintGVR("K8sRequiredLabels")

	// The same entry, with the generation as the syncer builds it (int64
	// from GetGeneration) and without the id: nothing to write.
	w.Set(gvr, obj, constraintByPod(obj, nil))
	if n := w.queue.Len(); n != 0 {
		t.Fatalf("an unchanged entry was queued (%d)", n)
	}

	// A newer generation is written; a second change before the write
	// replaces the first, and the key is queued once.
	obj.SetGeneration(3)
	w.Set(gvr, obj, constraintByPod(obj, nil))
	w.Set(gvr, obj, constraintByPod(obj, errTest("template k8srequiredlabels does not compile")))
	if n := w.queue.Len(); n != 1 {
		t.Fatalf("queue length %d, want 1", n)
	}
	entry := w.pending[byPodKey{gvr, "", "c"}]
	if entry["enforced"] != false || entry["observedGeneration"] != int64(3) {
		t.Errorf("pending entry = %v, want the newest (not enforced, generation 3)", entry)
	}
	errs, _ := entry["errors"].([]any)
	if len(errs) != 1 || errs[0].(map[string]any)["code"] != "ingest_error" {
		t.Errorf("errors = %v, want one ingest_error", entry["errors"])
	}

	w.Forget(gvr, "", "c")
	if _, ok := w.pending[byPodKey{gvr, "", "c"}]; ok {
		t.Error("Forget left the entry pending")
	}

	var none *ByPodStatus
	none.Set(gvr, obj, constraintByPod(obj, nil)) // a read-only syncer has none
}

type errTest string

func (e errTest) Error() string { return string(e) }
