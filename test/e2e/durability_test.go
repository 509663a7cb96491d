package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestRestartKeepsState stops gatehouse cleanly and starts it again on the
// same data dir: objects and the cluster CA survive.
func TestRestartKeepsState(t *testing.T) {
	inst := startGatehouse(t)
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "survivor"},
		Data:       map[string]string{"answer": "42"},
	}
	if _, err := inst.client.CoreV1().ConfigMaps("default").Create(t.Context(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating configmap: %v", err)
	}
	caFiles := []string{filepath.Join(inst.dataDir, "pki", "ca.crt"), filepath.Join(inst.dataDir, "pki", "ca.key")}
	before := readFiles(t, caFiles)

	took := inst.stop(t)
	if code := inst.current().exitCode(); code != 0 {
		t.Errorf("gatehouse exited with code %d %s after SIGTERM, want 0 (a clean exit)", code, took.Round(time.Millisecond))
	} else {
		t.Logf("gatehouse exited 0 %s after SIGTERM", took.Round(time.Millisecond))
	}

	inst.restart(t)
	got, err := inst.client.CoreV1().ConfigMaps("default").Get(t.Context(), "survivor", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("configmap default/survivor after restart: %v", err)
	}
	if got.Data["answer"] != "42" {
		t.Errorf("configmap default/survivor after restart has data %v, want answer=42", got.Data)
	}
	after := readFiles(t, caFiles)
	for i, path := range caFiles {
		if !bytes.Equal(before[i], after[i]) {
			t.Errorf("%s changed across a restart (%d bytes before, %d after): the CA must be kept", path, len(before[i]), len(after[i]))
		}
	}

	// SIGINT (Ctrl-C) must stop it as cleanly as SIGTERM.
	took = inst.stopWith(t, os.Interrupt)
	if code := inst.current().exitCode(); code != 0 {
		t.Errorf("gatehouse exited with code %d %s after SIGINT, want 0 (a clean exit)", code, took.Round(time.Millisecond))
	}
}

// TestKill9KeepsAcknowledgedWrites kills gatehouse with SIGKILL in the middle
// of a stream of writes: every write the API server acknowledged must be
// there after a restart.
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	const (
		ns        = "e2e-kill9"
		minWrites = 50
		minTime   = 3 * time.Second
	)
	inst := startGatehouse(t)
	createNamespace(t, inst, ns)

	var (
		mu     sync.Mutex
		acked  []string
		errs   int
		errLog []string // the first few failures, for the log
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		writeConfigMaps(ctx, inst.client, ns, func(name string, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				acked = append(acked, name)
				return
			}
			errs++
			if len(errLog) < 5 {
				errLog = append(errLog, fmt.Sprintf("%s at %s: %v", name, time.Now().Format("15:04:05.000"), err))
			}
		})
	})
	count := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return len(acked), errs
	}

	began := time.Now()
	poll(t, 60*time.Second, func() error {
		n, failed := count()
		if n < minWrites || time.Since(began) < minTime {
			return fmt.Errorf("%d writes acknowledged (%d failed) after %s, want at least %d and %s before the kill",
				n, failed, time.Since(began).Round(time.Millisecond), minWrites, minTime)
		}
		return nil
	})
	t.Logf("killing gatehouse at %s", time.Now().Format("15:04:05.000"))
	inst.kill9(t)
	cancel()
	wg.Wait()
	n, failed := count()
	t.Logf("killed gatehouse with SIGKILL after %d acknowledged writes; %d failed, around the kill or before it: %v", n, failed, errLog)

	inst.restart(t)
	list, err := inst.client.CoreV1().ConfigMaps(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing configmaps in %s after restart: %v", ns, err)
	}
	stored := map[string]bool{}
	for _, cm := range list.Items {
		stored[cm.Name] = true
	}
	var lost []string
	for _, name := range acked {
		if !stored[name] {
			lost = append(lost, name)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d of %d acknowledged configmaps are gone after kill -9 and restart: %v", len(lost), len(acked), lost)
	}
}

// writeConfigMaps creates cm-0, cm-1, ... one after another until ctx is
// done, reporting each outcome. A failed name is not retried.
func writeConfigMaps(ctx context.Context, client kubernetes.Interface, ns string, report func(name string, err error)) {
	for i := 0; ctx.Err() == nil; i++ {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i)},
			Data:       map[string]string{"i": fmt.Sprint(i)},
		}
		callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := client.CoreV1().ConfigMaps(ns).Create(callCtx, cm, metav1.CreateOptions{})
		cancel()
		if err != nil && ctx.Err() != nil {
			return // cut off by the test: not a failure of the server
		}
		report(cm.Name, err)
	}
}

func readFiles(t *testing.T, paths []string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("reading %s: %v", p, err)
		}
		out = append(out, data)
	}
	return out
}
