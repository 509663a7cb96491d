package metricsapi

import (
	"errors"
	"math"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
)

// point is one sample of a node or a container.
type point struct {
	// start is the container's start (zero for a node): its cumulative
	// CPU was zero then.
	start time.Time
	// at is when the CPU was measured.
	at time.Time
	// cpu is the cumulative CPU time in core-nanoseconds; memory the
	// working set in bytes.
	cpu, memory uint64
}

// batch is one scrape of every node.
type batch struct {
	nodes map[string]point
	pods  map[types.NamespacedName]map[string]point // by container name
}

// usage is a node's or container's figures over a window.
type usage struct {
	at     time.Time
	window time.Duration
	list   v1.ResourceList
}

// freshContainerMinWindow is metrics-server's: a container younger than
// one resolution but at least this old gets a rate from its start.
const freshContainerMinWindow = 10 * time.Second

// store keeps the last two points of every node and container, as
// metrics-server's storage does, and computes their usage.
type store struct {
	resolution time.Duration

	mu                 sync.RWMutex
	nodeLast, nodePrev map[string]point
	podLast, podPrev   map[types.NamespacedName]map[string]point
}

func newStore(resolution time.Duration) *store {
	return &store{resolution: resolution}
}

// add stores a batch: what is not in it is forgotten, and a point
// replaces the last only when it is newer.
func (s *store) add(b *batch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	nodeLast, nodePrev := map[string]point{}, map[string]point{}
	for name, p := range b.nodes {
		nodeLast[name] = p
		last, ok := s.nodeLast[name]
		switch {
		case !ok:
		case p.at.After(last.at):
			nodePrev[name] = last
		default:
			if prev, ok := s.nodePrev[name]; ok && prev.at.Before(p.at) {
				nodePrev[name] = prev
			}
		}
	}
	podLast, podPrev := map[types.NamespacedName]map[string]point{}, map[types.NamespacedName]map[string]point{}
	for pod, containers := range b.pods {
		last, prev := map[string]point{}, map[string]point{}
		for name, p := range containers {
			last[name] = p
			if age := p.at.Sub(p.start); p.start.Before(p.at) && age < s.resolution && age >= freshContainerMinWindow {
				prev[name] = point{start: p.start, at: p.start, memory: p.memory}
				continue
			}
			stored, ok := s.podLast[pod][name]
			// A container that restarted since (a later start) starts over.
			if !ok || !p.start.Before(stored.at) {
				continue
			}
			if p.at.After(stored.at) {
				prev[name] = stored
			} else if older, ok := s.podPrev[pod][name]; ok && older.at.Before(p.at) {
				prev[name] = older
			}
		}
		podLast[pod] = last
		if len(prev) > 0 {
			podPrev[pod] = prev
		}
	}
	s.nodeLast, s.nodePrev, s.podLast, s.podPrev = nodeLast, nodePrev, podLast, podPrev
}

// node is a node's usage; false until it has two points.
func (s *store) node(name string) (usage, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	last, ok := s.nodeLast[name]
	if !ok {
		return usage{}, false
	}
	prev, ok := s.nodePrev[name]
	if !ok {
		return usage{}, false
	}
	u, err := between(last, prev)
	return u, err == nil
}

// pod is the usage of each of a pod's containers, all over the earliest
// of their windows; false unless every container has two points.
func (s *store) pod(key types.NamespacedName) (map[string]usage, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	last, ok := s.podLast[key]
	if !ok {
		return nil, false
	}
	prev := s.podPrev[key]
	out := make(map[string]usage, len(last))
	for name, l := range last {
		p, ok := prev[name]
		if !ok {
			return nil, false
		}
		u, err := between(l, p)
		if err != nil {
			continue // metrics-server skips such a container
		}
		out[name] = u
	}
	return out, true
}

// between is the usage from prev to last: CPU as a rate in nanocores,
// memory as last's working set.
func between(last, prev point) (usage, error) {
	if last.start.Before(prev.start) {
		return usage{}, errors.New("unexpected decrease in start time")
	}
	if last.cpu < prev.cpu {
		return usage{}, errors.New("unexpected decrease in cumulative CPU usage")
	}
	window := last.at.Sub(prev.at)
	if window <= 0 {
		return usage{}, errors.New("no time between the samples")
	}
	rate := float64(last.cpu-prev.cpu) / window.Seconds()
	return usage{at: last.at, window: window, list: v1.ResourceList{
		v1.ResourceCPU:    quantity(uint64(rate), resource.DecimalSI, -9),
		v1.ResourceMemory: quantity(last.memory, resource.BinarySI, 0),
	}}, nil
}

// quantity is a Quantity of a uint64, losing a digit of precision where it
// exceeds int64, as metrics-server's.
func quantity(v uint64, format resource.Format, scale resource.Scale) resource.Quantity {
	q := *resource.NewScaledQuantity(int64(v), scale)
	if v > math.MaxInt64 {
		q = *resource.NewScaledQuantity(int64(v/10), scale+1)
	}
	q.Format = format
	return q
}
