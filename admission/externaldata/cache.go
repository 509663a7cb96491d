package externaldata

import (
	"sync"
	"time"
)

// DefaultCacheTTL is how long a provider's answer for a key is reused, as
// Gatekeeper's --external-data-provider-response-cache-ttl defaults.
const DefaultCacheTTL = 3 * time.Minute

// responseCache keeps providers' answers per key, values and per-key
// errors alike (a systemError or a failed call is never kept), for the
// external_data builtin of validation and audit, as Gatekeeper's provider
// response cache does. Entries are keyed by the provider's name only: a
// changed Provider keeps its entries until they expire, as in Gatekeeper.
type responseCache struct {
	ttl time.Duration
	now func() time.Time

	mu        sync.Mutex
	entries   map[cacheKey]cacheValue
	lastSweep time.Time
}

type cacheKey struct{ provider, key string }

type cacheValue struct {
	received time.Time
	value    any
	err      string
}

func newResponseCache(ttl time.Duration, now func() time.Time) *responseCache {
	if ttl <= 0 {
		return nil
	}
	return &responseCache{ttl: ttl, now: now, entries: map[cacheKey]cacheValue{}, lastSweep: now()}
}

// get returns the fresh entry for key; a nil cache has none.
func (c *responseCache) get(provider, key string) (cacheValue, bool) {
	if c == nil {
		return cacheValue{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.entries[cacheKey{provider, key}]
	if !ok || c.now().Sub(v.received) > c.ttl {
		return cacheValue{}, false
	}
	return v, true
}

// put keeps items, and drops the expired entries once per TTL.
func (c *responseCache) put(provider string, items []Item) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for _, it := range items {
		c.entries[cacheKey{provider, it.Key}] = cacheValue{received: now, value: it.Value, err: it.Error}
	}
	if now.Sub(c.lastSweep) > c.ttl {
		for k, v := range c.entries {
			if now.Sub(v.received) > c.ttl {
				delete(c.entries, k)
			}
		}
		c.lastSweep = now
	}
}

// forget drops a provider's entries (the provider was deleted).
func (c *responseCache) forget(provider string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.entries {
		if k.provider == provider {
			delete(c.entries, k)
		}
	}
}
