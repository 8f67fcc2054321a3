package auth

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"sync"
	"time"
	"unique"
	"unsafe"
)

// CacheConfig bounds a Cache.
type CacheConfig struct {
	// TTL is the longest an identity is reused; zero means until the token
	// expires. An entry never outlives its token.
	TTL time.Duration
	// MaxEntries bounds the cache (default 16384, about 4.6 MiB: within an
	// instance's 64 MiB of Go memory beside the read cache). A token that
	// no longer fits costs a signature check again, not a failure.
	MaxEntries int
}

// Cache remembers the identities of tokens a verifier accepted, by a
// SHA-256 of the token, so that a token seen again costs a hash and a map
// lookup instead of a signature check or an introspection. Refusals are not
// kept: a token is accepted from the cache only after the verifier accepted
// it once.
type Cache struct {
	next   Verifier
	ttl    time.Duration
	now    func() time.Time
	shards [cacheShards]cacheShard
}

const cacheShards = 32

type cacheShard struct {
	mu      sync.RWMutex
	max     int
	entries map[[sha256.Size]byte]cacheEntry
}

type cacheEntry struct {
	id    Identity
	until time.Time
}

// NewCache returns next behind a cache.
func NewCache(next Verifier, cfg CacheConfig) *Cache {
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 16384
	}
	c := &Cache{next: next, ttl: cfg.TTL, now: time.Now}
	for i := range c.shards {
		c.shards[i] = cacheShard{max: max(cfg.MaxEntries/cacheShards, 1), entries: map[[sha256.Size]byte]cacheEntry{}}
	}
	// What a key signed is forgotten when the issuer drops the key.
	if s, ok := next.(interface{ subscribe(func(kids []string)) }); ok {
		s.subscribe(c.forgetKeys)
	}
	return c
}

// forgetKeys drops the identities of tokens signed with any of kids.
func (c *Cache) forgetKeys(kids []string) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for k, e := range s.entries {
			if e.id.KeyID != "" && slices.Contains(kids, e.id.KeyID) {
				delete(s.entries, k)
			}
		}
		s.mu.Unlock()
	}
}

// Verify returns the identity of token from the cache, or from the verifier
// behind it.
func (c *Cache) Verify(ctx context.Context, token string) (Identity, error) {
	key := sha256.Sum256(bytesOf(token))
	shard := &c.shards[binary.LittleEndian.Uint32(key[:4])%cacheShards]
	now := c.now()
	shard.mu.RLock()
	e, ok := shard.entries[key]
	shard.mu.RUnlock()
	if ok && now.Before(e.until) {
		return e.id, nil
	}
	id, err := c.next.Verify(ctx, token)
	if err != nil {
		return id, err
	}
	until := id.Expiry
	if c.ttl > 0 && now.Add(c.ttl).Before(until) {
		until = now.Add(c.ttl)
	}
	shard.put(key, cacheEntry{id: interned(id), until: until}, now)
	return id, nil
}

// interned returns id with the strings that most identities share (the
// client, the scopes, the key id, the providers) as one copy each: the
// cache holds up to MaxEntries identities, and their own copies of the same
// few strings would be most of its memory. Only the subject is each
// identity's own.
func interned(id Identity) Identity {
	id.ClientID = unique.Make(id.ClientID).Value()
	id.KeyID = unique.Make(id.KeyID).Value()
	id.Scopes = internAll(id.Scopes)
	id.LinkedProviders = internAll(id.LinkedProviders)
	return id
}

func internAll(ss []string) []string {
	if ss == nil {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = unique.Make(s).Value()
	}
	return out
}

func (s *cacheShard) put(key [sha256.Size]byte, e cacheEntry, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.entries) >= s.max {
		for k, old := range s.entries {
			if !now.Before(old.until) {
				delete(s.entries, k)
			}
		}
		// Still full: drop arbitrary entries; they are only a cache.
		for k := range s.entries {
			if len(s.entries) < s.max {
				break
			}
			delete(s.entries, k)
		}
	}
	s.entries[key] = e
}

// Len reports how many identities the cache holds.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += len(c.shards[i].entries)
		c.shards[i].mu.RUnlock()
	}
	return n
}

// bytesOf is token without a copy: hashing neither keeps nor changes it, and
// a copy per request is what this cache exists to avoid.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
