package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// A page of the history walks the (user_id, seq) index from its cursor:
// a deep cursor costs what the page returns, not every newer record.
func TestHistoryPageUsesTheCursor(t *testing.T) {
	s, err := Open(context.Background(), Config{Path: filepath.Join(t.TempDir(), "u.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows, err := s.read.Query("EXPLAIN QUERY PLAN "+selectHistory, "u", 5, 0, 0, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if !strings.Contains(strings.Join(plan, "\n"), "attribute_history_user (user_id=? AND seq<?)") {
		t.Fatalf("the history page's plan:\n%s", strings.Join(plan, "\n"))
	}
}
