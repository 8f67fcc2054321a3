package userattrs

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// The read cache holds at most its bytes, however large the users are,
// and never an entry larger than its share.
func TestReadCacheBytes(t *testing.T) {
	c := newReadCache(ReadCacheConfig{Enabled: true, MaxEntries: 1 << 20, MaxBytes: 64 * 10000})
	big := Attributes{"v": {strings.Repeat("x", 4000)}}
	for i := range 10000 {
		c.written("user"+strconv.Itoa(i), uint64(i+1), &View{attrs: big, size: big.Size()}, time.Now())
	}
	total, entries := 0, 0
	for i := range c.shards {
		s := &c.shards[i]
		if s.entries.Bytes() > 64*10000/readCacheShards {
			t.Fatalf("shard %d holds %d bytes", i, s.entries.Bytes())
		}
		total += s.entries.Bytes()
		entries += s.entries.Len()
	}
	if total > 64*10000 || entries == 0 {
		t.Fatalf("%d entries of %d bytes cached, bound %d", entries, total, 64*10000)
	}
	huge := Attributes{"v": {strings.Repeat("x", 20000)}}
	c.written("user1", 1<<40, &View{attrs: huge, size: huge.Size()}, time.Now())
	if _, _, ok := c.get("user1", time.Now()); ok {
		t.Fatal("an entry larger than its shard's bytes was kept")
	}
}
