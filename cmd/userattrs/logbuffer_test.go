package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/userattrs/userattrs/internal/testutil"
)

// Every line written reaches the output, whole and in order per writer:
// within the flush interval, and all of it on Close.
func TestBufferedLog(t *testing.T) {
	out := &testutil.SyncBuffer{}
	b := newBufferedLog(out)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				fmt.Fprintf(b, "writer %d line %d %s\n", w, i, strings.Repeat("x", 100))
			}
		})
	}
	wg.Wait()
	b.Write([]byte("last\n"))
	time.Sleep(3 * logFlushInterval)
	if !strings.HasSuffix(out.String(), "last\n") {
		t.Fatal("a line waited longer than the flush interval")
	}
	b.Write([]byte("on close\n"))
	b.Close()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 4*2000+2 {
		t.Fatalf("%d lines, want %d", len(lines), 4*2000+2)
	}
	next := map[string]int{}
	for _, l := range lines[:len(lines)-2] {
		var w, i int
		if _, err := fmt.Sscanf(l, "writer %d line %d", &w, &i); err != nil || !bytes.HasSuffix([]byte(l), bytes.Repeat([]byte("x"), 100)) {
			t.Fatalf("torn line %q", l)
		}
		if key := fmt.Sprint(w); i != next[key] {
			t.Fatalf("writer %d: line %d after %d", w, i, next[key]-1)
		} else {
			next[key]++
		}
	}
}
