package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	_ "modernc.org/sqlite" // the seeding connection

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/auth"
	"github.com/userattrs/userattrs/store/sqlstore"
)

// millionAttributes are what each user of the large store holds: the same
// three attributes as the benchmark of record's users, so that a GET's body
// is the same size in both.
var millionAttributes = userattrs.Attributes{"referred": {"false"}, "theme": {"dark"}, "tos_accepted": {"true"}}

// reuses is how often each token of the reused-token pattern is sent.
const reuses = 4

// measureMillion measures userattrs on SQLite with a store far larger than
// its caches: b.million users, seeded straight into the database in one
// transaction, read and written uniformly at random, at the highest
// connection count. Each token is either first seen (a signature check
// for every request) or sent several times, as an app that calls several
// times in a token's hour does.
func (b *bench) measureMillion() error {
	dir := filepath.Join(b.tmp, "million")
	path := filepath.Join(dir, "users.db")
	if out, err := exec.Command(b.bins["userattrs"], "migrate", "--store", "sqlite:"+path).CombinedOutput(); err != nil {
		return fmt.Errorf("migrate: %w\n%s", err, out)
	}
	start := time.Now()
	if err := seedSQLite(path, b.million); err != nil {
		return err
	}
	var bytes int64
	for _, suffix := range []string{"", "-wal"} {
		if fi, err := os.Stat(path + suffix); err == nil {
			bytes += fi.Size()
		}
	}
	b.note("sqlite, %d users of %d attributes seeded in %s: %d MB on disk, %.0f bytes per user",
		b.million, len(millionAttributes), time.Since(start).Round(time.Second), bytes>>20, float64(bytes)/float64(b.million))

	key, err := auth.LoadOrCreateDevKey(dir)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	random := func() string { return fmt.Sprintf("m-%07d", rng.IntN(b.million)) }
	// More requests than the measurement can send, so that no token is
	// sent twice in the first-seen rows.
	budget := int(b.duration.Seconds()) * 15000
	var firstUsers, reusedUsers, putUsers []string
	for range budget {
		firstUsers = append(firstUsers, random())
		putUsers = append(putUsers, random())
	}
	for range budget / reuses {
		reusedUsers = append(reusedUsers, random())
	}
	logf("signing %d tokens", len(firstUsers)+len(putUsers)+len(reusedUsers))
	firstTokens, err := signAll(key, firstUsers)
	if err != nil {
		return err
	}
	putTokens, err := signAll(key, putUsers)
	if err != nil {
		return err
	}
	reusedTokens, err := signAll(key, reusedUsers)
	if err != nil {
		return err
	}

	conns := b.conns[len(b.conns)-1]
	// The verify-and-read limit first, on the same file and tokens: the
	// service holds the file alone once it runs.
	limit, err := b.start(b.bins["bare"], nil, "-verify-read", path, "-key-dir", dir)
	if err != nil {
		return err
	}
	var limitGets []vegeta.Target
	for _, tok := range firstTokens {
		limitGets = append(limitGets, vegeta.Target{Method: "GET", URL: limit.url + "/user/2025-1/attributes",
			Header: http.Header{"Authorization": {"Bearer " + tok}}})
	}
	b.measureOnce(verifyReadTarget, "GET", Scenario{Users: b.million, Attributes: 3, Pattern: firstSeen}, limitGets, nil, conns, true)
	limit.stop()

	s, err := b.start(b.bins["userattrs"], nil, "serve", "--dev", "--data-dir", dir, "--store", "sqlite:"+path)
	if err != nil {
		return err
	}
	defer s.stop()
	get := func(tok string) vegeta.Target {
		return vegeta.Target{Method: "GET", URL: s.url + "/user/2025-1/attributes", Header: http.Header{"Authorization": {"Bearer " + tok}}}
	}
	var firstGets, reusedGets, puts []vegeta.Target
	for _, tok := range firstTokens {
		firstGets = append(firstGets, get(tok))
	}
	// Each token is sent 4 times, once in each of 4 shuffled rounds over a
	// block of users: an app's calls come a while apart, not all at once.
	const block = 2000
	for start := 0; start < len(reusedTokens); start += block {
		users := reusedTokens[start:min(start+block, len(reusedTokens))]
		for range reuses {
			for _, i := range rng.Perm(len(users)) {
				reusedGets = append(reusedGets, get(users[i]))
			}
		}
	}
	for i, tok := range putTokens {
		puts = append(puts, vegeta.Target{Method: "PUT", URL: s.url + "/user/2024-3/attributes", Body: []byte(fmt.Sprintf(`{"theme":"t%d"}`, i)),
			Header: http.Header{"Authorization": {"Bearer " + tok}, "Content-Type": {"application/json"}}})
	}
	// A warm-up of users the measurement does not read.
	var warm []vegeta.Target
	for range 2000 {
		tok, err := sign(key, random())
		if err != nil {
			return err
		}
		warm = append(warm, get(tok))
	}
	attack(warm, b.conns[len(b.conns)-1], b.warmup, 0, false)

	const target = "userattrs sqlite"
	b.measureOnce(target, "GET", Scenario{Users: b.million, Attributes: 3, Pattern: firstSeen}, firstGets, s, conns, true)
	b.measureOnce(target, "GET", Scenario{Users: b.million, Attributes: 3, Pattern: reusedFour}, reusedGets, s, conns, true)
	b.measureOnce(target, "PUT", Scenario{Users: b.million, Attributes: 3, Pattern: firstSeen}, puts, s, conns, true)
	// The heap once every cache has filled says where the memory goes.
	<-b.profile(s, "heap", "million-heap")
	b.memory(s)
	return nil
}

// memory notes where the server's memory is, from its metrics.
func (b *bench) memory(s *server) {
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		logf("metrics: %v", err)
		return
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	values := map[string]float64{}
	for _, line := range strings.Split(string(data), "\n") {
		var name string
		var v float64
		if _, err := fmt.Sscanf(line, "%s %g", &name, &v); err == nil {
			values[name] = v
		}
	}
	mib := func(name string) float64 { return values[name] / (1 << 20) }
	// The resident pages of the binary (RssFile) count in RSS beside what
	// the process allocated (RssAnon: Go's heap and SQLite's page caches).
	kib := procStatus(s.cmd.Process.Pid)
	b.note("million-user server at the end: RSS %.1f MiB (%.1f MiB allocated, %.1f MiB of the binary's pages); "+
		"Go heap in use %.1f MiB of %.1f MiB obtained, stacks %.1f MiB, all Go memory %.1f MiB",
		mib("process_resident_memory_bytes"), kib["RssAnon"]/1024, kib["RssFile"]/1024, mib("go_memstats_heap_inuse_bytes"),
		mib("go_memstats_heap_sys_bytes"), mib("go_memstats_stack_inuse_bytes"), mib("go_memstats_sys_bytes"))
}

// seedSQLite writes users m-0000000 ... with millionAttributes into the
// store's table, a row per attribute, in one transaction.
func seedSQLite(path string, users int) error {
	logf("seeding %d users", users)
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)")
	if err != nil {
		return err
	}
	defer db.Close()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	insert, err := tx.PrepareContext(ctx, `INSERT INTO user_attribute (user_id, name, "values", updated_at) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	now := time.Now().UnixMilli()
	names := millionAttributes.Keys()
	for i := range users {
		user := fmt.Sprintf("m-%07d", i)
		for _, name := range names {
			if _, err := insert.ExecContext(ctx, user, name, string(sqlstore.AppendValues(nil, millionAttributes[name])), now); err != nil {
				return err
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	_, err = db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)")
	return err
}

// signAll signs a token for each user, on every core.
func signAll(key *auth.DevKey, users []string) ([]string, error) {
	tokens := make([]string, len(users))
	errs := make([]error, runtime.NumCPU())
	var wg sync.WaitGroup
	for w := range errs {
		wg.Go(func() {
			for i := w; i < len(users); i += len(errs) {
				if tokens[i], errs[w] = sign(key, users[i]); errs[w] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return tokens, nil
}
