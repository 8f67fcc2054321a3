package userattrs

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/userattrs/userattrs/internal/bounded"
)

// ReadCacheConfig configures the per-instance read cache of a Service.
type ReadCacheConfig struct {
	// Enabled turns the cache on where the store's capabilities allow it
	// (see NewService): a client always reads its own writes through the
	// instance that made them.
	Enabled bool
	// TTL bounds how long an entry of a store with external writers is
	// served; entries of a store only this instance writes stay until
	// evicted.
	TTL time.Duration
	// MaxEntries bounds the number of users kept (default 50000).
	MaxEntries int
	// MaxBytes bounds the memory the cache takes, over all users, as
	// entries are counted (names and values, their encoded bodies and what
	// holding them costs; default DefaultReadCacheBytes): users near the
	// size limit must not multiply it by MaxEntries.
	MaxBytes int
}

// DefaultReadCacheBytes is the read cache's bound in bytes unless one is
// configured: about 30,000 users of a few attributes, or 1,900 of 100.
// With the token cache and the stores' own, it keeps an instance's live
// heap well under its 64 MiB soft limit however many users it serves.
const DefaultReadCacheBytes = 24 << 20

// readCache holds the views of recently read or written users.
type readCache struct {
	ttl    time.Duration
	seed   maphash.Seed
	seq    atomic.Uint64 // orders the writes of one user, see Service.Merge
	shards [readCacheShards]readShard
}

const readCacheShards = 64

type readShard struct {
	mu           sync.Mutex
	epoch        uint64 // counts writes, so that a read that raced one does not fill in stale data
	entries      *bounded.Map[readEntry]
	hits, misses uint64 // counted under mu, which a lookup holds anyway
}

type readEntry struct {
	view  *View
	seq   uint64 // of the write that set it; 0 for a read
	until time.Time
}

// entryOverhead and attributeOverhead are what an entry costs beyond its
// names and values, measured with runtime.MemStats for users of 3
// attributes: the map slot and the user id, the view and its tag, and per
// attribute the map's slot, the string and slice headers.
const (
	entryOverhead     = 480
	attributeOverhead = 80
)

// size counts the names and values twice, once in the attributes and once
// in the encoded body the view keeps after its first read.
func (e readEntry) size() int {
	return entryOverhead + 2*e.view.size + attributeOverhead*len(e.view.attrs)
}

func newReadCache(cfg ReadCacheConfig) *readCache {
	if !cfg.Enabled {
		return nil
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 50000
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultReadCacheBytes
	}
	c := &readCache{ttl: cfg.TTL, seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i] = readShard{entries: bounded.New[readEntry](cfg.MaxEntries/readCacheShards, cfg.MaxBytes/readCacheShards)}
	}
	return c
}

func (c *readCache) shard(user string) *readShard {
	return &c.shards[maphash.String(c.seed, user)%readCacheShards]
}

func (c *readCache) expiry(now time.Time) time.Time {
	if c.ttl <= 0 {
		return time.Time{}
	}
	return now.Add(c.ttl)
}

// get returns the cached entry of user and the shard's epoch, which a miss
// hands back to fill.
func (c *readCache) get(user string, now time.Time) (readEntry, uint64, bool) {
	s := c.shard(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries.Get(user)
	if ok && (e.until.IsZero() || now.Before(e.until)) {
		s.hits++
		return e, s.epoch, true
	}
	s.misses++
	return readEntry{}, s.epoch, false
}

// ReadCacheStats are the read cache's counts, for its metrics.
type ReadCacheStats struct {
	Hits, Misses uint64
	Users, Bytes int
}

func (c *readCache) stats() ReadCacheStats {
	var st ReadCacheStats
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		st.Hits += s.hits
		st.Misses += s.misses
		st.Users += s.entries.Len()
		st.Bytes += s.entries.Bytes()
		s.mu.Unlock()
	}
	return st
}

// fill caches what a read found, unless a write of the shard came between
// the miss and now: the read may then hold data older than that write.
func (c *readCache) fill(user string, epoch uint64, view *View, now time.Time) {
	s := c.shard(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.epoch != epoch {
		return
	}
	s.put(user, readEntry{view: view, until: c.expiry(now)})
}

// written caches the result of an acknowledged write, unless a later write
// of the user is cached already.
func (c *readCache) written(user string, seq uint64, view *View, now time.Time) {
	s := c.shard(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch++
	if e, ok := s.entries.Get(user); ok && e.seq > seq {
		return
	}
	s.put(user, readEntry{view: view, seq: seq, until: c.expiry(now)})
}

// forget drops user after a write whose outcome is unknown.
func (c *readCache) forget(user string) {
	s := c.shard(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch++
	s.entries.Remove(user)
}

func (s *readShard) put(user string, e readEntry) { s.entries.Put(user, e, e.size()) }
