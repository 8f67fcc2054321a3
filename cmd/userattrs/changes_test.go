package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store/sqlite"
)

// Pruning removes every record past retention, a step at a time, and
// nothing newer.
func TestPruneOnce(t *testing.T) {
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "u.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	for i := range 25 {
		if err := st.Update(ctx, "alice", func(cur userattrs.Attributes) (userattrs.Attributes, error) {
			return userattrs.Attributes{"n": {strconv.Itoa(i)}}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := pruneOnce(ctx, st, time.Now().Add(-time.Hour), 10); n != 0 || err != nil {
		t.Fatalf("records within retention pruned: %d, %v", n, err)
	}
	if n, err := pruneOnce(ctx, st, time.Now().Add(time.Second), 10); n != 25 || err != nil {
		t.Fatalf("pruned %d of 25 past retention: %v", n, err)
	}
	if left, err := st.History(ctx, "alice", userattrs.HistoryQuery{Limit: 100}); err != nil || len(left) != 0 {
		t.Fatalf("left: %d, %v", len(left), err)
	}
}

// userattrs history prints a user's changes, newest first, a JSON record
// per line, for an operator (on SQLite once the service has stopped: the
// file is one process's). The history keeps to --history-max-records: of
// three changes, the oldest is gone.
func TestHistoryCommand(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, dir, nil, "--dev", "--data-dir", dir, "--history-max-records", "2")
	tok := mintToken(t, dir, "--sub", "alice", "--data-dir", dir)
	for _, body := range []string{`{"first":"gone"}`, `{"tos_accepted":"yes"}`, `{"tos_accepted":null,"plan":"pro"}`} {
		if status, _ := call(t, "PUT", p.url+"/user/2024-3/attributes", tok, body); status != 204 {
			t.Fatalf("PUT %s: %d", body, status)
		}
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.wait(t, 20*time.Second)
	cmd := exec.Command(userattrsBinary(t), "history", "--data-dir", dir, "--user", "alice")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("history: %v", err)
	}
	var records []userattrs.Record
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		var r userattrs.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		records = append(records, r)
	}
	if len(records) != 2 || records[0].Set["plan"][0] != "pro" || strings.Join(records[0].Removed, ",") != "tos_accepted" ||
		records[1].Set["tos_accepted"][0] != "yes" || records[1].Actor != (userattrs.Actor{Type: "user", ID: "alice"}) ||
		records[1].ClientID != "userattrs-cli" {
		t.Fatalf("history:\n%s", out)
	}
	if out, err := exec.Command(userattrsBinary(t), "history", "--store", "memory:", "--user", "alice").CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "in the memory of the process that serves it") {
		t.Fatalf("history of the memory store: %v %s", err, out)
	}

	// With --history off, changes leave no record on disk.
	off := t.TempDir()
	p = startServe(t, off, nil, "--dev", "--data-dir", off, "--history", "off")
	tok = mintToken(t, off, "--sub", "alice", "--data-dir", off)
	if status, _ := call(t, "PUT", p.url+"/user/2024-3/attributes", tok, `{"plan":"pro"}`); status != 204 {
		t.Fatalf("PUT with the history off: %d", status)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.wait(t, 20*time.Second)
	if out, err := exec.Command(userattrsBinary(t), "history", "--data-dir", off, "--user", "alice").Output(); err != nil || len(out) != 0 {
		t.Fatalf("history of a store served with --history off: %v %q", err, out)
	}
}
