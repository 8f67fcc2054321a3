package server_test

import (
	"strings"
	"testing"

	"github.com/userattrs/userattrs/store/memory"
)

// A cursor is the last position seen: every number the document's pattern
// admits is one (past the last parked event the page is empty), and what
// is not a number of 64 bits is refused.
func TestParkedCursor(t *testing.T) {
	st := memory.New()
	f := newFixture(t, func(o *options) { o.store, o.outbox = st, st })
	admin := f.adminToken()
	for _, cursor := range []string{"0", "9223372036854775807", "9608669091005743473", "18446744073709551615"} {
		r := f.do("GET", "/admin/events/parked?page[cursor]="+cursor, "", "Authorization", "Bearer "+admin)
		if r.status != 200 || !strings.Contains(string(r.body), `"data":[]`) {
			t.Errorf("cursor %s: %d %s", cursor, r.status, r.body)
		}
	}
	for _, cursor := range []string{"18446744073709551616", "-1", "x"} {
		if r := f.do("GET", "/admin/events/parked?page[cursor]="+cursor, "", "Authorization", "Bearer "+admin); r.status != 400 {
			t.Errorf("cursor %s: %d %s, want 400", cursor, r.status, r.body)
		}
	}
}
