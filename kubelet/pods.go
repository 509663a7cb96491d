package kubelet

import (
	"context"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// podWorker syncs one pod, one sync at a time, when the pod changes in
// the API, when its containers change in the runtime (relist), or when a
// back-off it waits for ends.
type podWorker struct {
	uid             types.UID
	namespace, name string
	signal          chan struct{}
	// state the worker keeps between syncs.
	startTime *time.Time
	volumes   map[string]string
	volumesAt time.Time
	// terminated marks a pod whose containers were all stopped for good
	// (deleted, or finished with a terminal phase).
	terminated bool
}

func (a *Agent) podChanged(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if pod, ok := obj.(*v1.Pod); ok {
		a.enqueue(pod.UID, pod.Namespace, pod.Name)
	}
}

// enqueue wakes the pod's worker, starting one if needed.
func (a *Agent) enqueue(uid types.UID, namespace, name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.workersCtx == nil || a.workersCtx.Err() != nil {
		return
	}
	w := a.workers[uid]
	if w == nil {
		w = &podWorker{uid: uid, namespace: namespace, name: name, signal: make(chan struct{}, 1)}
		a.workers[uid] = w
		a.workersWG.Add(1)
		go func() {
			defer a.workersWG.Done()
			a.runWorker(a.workersCtx, w)
		}()
	}
	select {
	case w.signal <- struct{}{}:
	default: // a sync is already due
	}
}

func (a *Agent) runWorker(ctx context.Context, w *podWorker) {
	var timer *time.Timer
	var due <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.signal:
		case <-due:
		}
		pod, err := a.pods.Pods(w.namespace).Get(w.name)
		if apierrors.IsNotFound(err) || (err == nil && pod.UID != w.uid) {
			pod = nil
		} else if err != nil {
			continue
		}
		requeue, finished := a.syncPod(ctx, w, pod)
		if finished {
			a.mu.Lock()
			delete(a.workers, w.uid)
			a.mu.Unlock()
			return
		}
		if timer != nil {
			timer.Stop()
			due = nil
		}
		if requeue > 0 {
			timer = time.NewTimer(requeue)
			due = timer.C
		}
	}
}

// stopWorkers ends every worker after its current sync.
func (a *Agent) stopWorkers() {
	a.mu.Lock()
	if a.cancelWorkers != nil {
		a.cancelWorkers()
	}
	a.mu.Unlock()
	a.workersWG.Wait()
}

// relistEntry is what the relist remembers of a container or sandbox.
type relistEntry struct {
	state           int32
	uid             types.UID
	namespace, name string
}

// relistLoop lists the runtime's containers and sandboxes and wakes the
// workers of pods whose containers changed state (upstream's PLEG).
func (a *Agent) relistLoop(ctx context.Context) {
	t := time.NewTicker(a.cfg.RelistPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.relist(ctx)
	}
}

func (a *Agent) relist(ctx context.Context) {
	seen := map[string]relistEntry{}
	containers, err := a.runtime.ListContainers(ctx, &runtimeapi.ContainerFilter{LabelSelector: map[string]string{labelManaged: "true"}})
	if err != nil {
		return
	}
	for _, c := range containers {
		seen[c.Id] = relistEntry{state: int32(c.State), uid: types.UID(c.Labels[labelPodUID]), namespace: c.Labels[labelPodNamespace], name: c.Labels[labelPodName]}
	}
	sandboxes, err := a.runtime.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{labelManaged: "true"}})
	if err != nil {
		return
	}
	for _, s := range sandboxes {
		seen[s.Id] = relistEntry{state: int32(s.State), uid: types.UID(s.Metadata.Uid), namespace: s.Metadata.Namespace, name: s.Metadata.Name}
	}
	a.mu.Lock()
	previous := a.relisted
	a.relisted = seen
	a.mu.Unlock()
	for id, e := range seen {
		if p, ok := previous[id]; !ok || p.state != e.state {
			a.enqueue(e.uid, e.namespace, e.name)
		}
	}
	for id, p := range previous {
		if _, ok := seen[id]; !ok {
			a.enqueue(p.uid, p.namespace, p.name)
		}
	}
}

// adoptOrCleanUp wakes a worker for every pod the runtime has sandboxes
// of: pods still bound here are adopted as they run (same containers),
// the others are stopped and removed.
func (a *Agent) adoptOrCleanUp(ctx context.Context) {
	sandboxes, err := a.runtime.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{labelManaged: "true"}})
	if err != nil {
		a.logger.Warn("listing the runtime's pod sandboxes", "err", err)
		return
	}
	for _, s := range sandboxes {
		a.enqueue(types.UID(s.Metadata.Uid), s.Metadata.Namespace, s.Metadata.Name)
	}
}
