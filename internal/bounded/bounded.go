// Package bounded is a map held within a number of entries and of bytes,
// for the service's caches: it drops arbitrary entries to make room, which
// costs nothing to track and suits caches whose users are read uniformly
// at random as well as ones that are read in turn.
package bounded

// Map is a string-keyed map within MaxEntries entries and MaxBytes bytes,
// as its callers count each entry's bytes. It is not safe for concurrent
// use.
type Map[V any] struct {
	entries              map[string]entry[V]
	bytes                int
	maxEntries, maxBytes int
}

type entry[V any] struct {
	v    V
	size int
}

// New returns an empty map within the bounds (each at least 1).
func New[V any](maxEntries, maxBytes int) *Map[V] {
	return &Map[V]{entries: map[string]entry[V]{}, maxEntries: max(maxEntries, 1), maxBytes: max(maxBytes, 1)}
}

// Get returns the value of k.
func (m *Map[V]) Get(k string) (V, bool) {
	e, ok := m.entries[k]
	return e.v, ok
}

// Lookup returns the value of k and the size it was put with.
func (m *Map[V]) Lookup(k string) (V, int, bool) {
	e, ok := m.entries[k]
	return e.v, e.size, ok
}

// Put keeps v for k, counted as size bytes, dropping other entries to make
// room. A value larger than the whole bound is not kept, and any older
// value of k goes.
func (m *Map[V]) Put(k string, v V, size int) {
	m.Remove(k)
	if size > m.maxBytes {
		return
	}
	for other := range m.entries {
		if len(m.entries) < m.maxEntries && m.bytes+size <= m.maxBytes {
			break
		}
		m.Remove(other)
	}
	m.entries[k] = entry[V]{v: v, size: size}
	m.bytes += size
}

// Remove drops k.
func (m *Map[V]) Remove(k string) {
	if e, ok := m.entries[k]; ok {
		m.bytes -= e.size
		delete(m.entries, k)
	}
}

// Len is the number of entries, and Bytes what they count.
func (m *Map[V]) Len() int   { return len(m.entries) }
func (m *Map[V]) Bytes() int { return m.bytes }
