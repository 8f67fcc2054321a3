package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store"
	"github.com/userattrs/userattrs/store/sqlstore"
)

// commit applies a batch in one IMMEDIATE transaction. A merge whose
// updater refuses (limits, If-Match) gets its error and changes nothing;
// the others are acknowledged only after the commit. A database error fails
// the whole batch, since its transaction is rolled back.
func (s *Store) commit(batch []*sqlstore.Merge) ([]error, error) {
	// The batch outlives any one request: no request's context may cancel
	// the others' merges.
	ctx := context.Background()
	outcomes := make([]error, len(batch))
	s.committing.Store(time.Now().UnixNano())
	defer s.committing.Store(0)
	row := &batchRow{s: s, pending: map[string]known{}, journal: sqlstore.NewJournal(), usages: map[string]sqlstore.Usage{},
		generation: s.known.currentGeneration()}
	err := func() (err error) {
		// Updaters' panics are their merges' errors (userattrs.Next); one
		// anywhere else fails the batch, not the process.
		defer userattrs.RecoverPanic(&err)
		if err := s.sameFile(); err != nil {
			return err
		}
		tx, err := s.write.BeginTx(ctx, nil)
		if err != nil {
			return mapError(err)
		}
		defer tx.Rollback()
		row.tx = tx
		for i, m := range batch {
			if e, ok := m.Prepared.(*erasure); ok {
				if outcomes[i] = row.erase(ctx, e); row.failed != nil {
					return row.failed
				}
				continue
			}
			if m.Update == nil {
				if _, err := tx.StmtContext(ctx, s.probe).ExecContext(ctx, time.Now().UnixMilli()); err != nil {
					return mapError(err)
				}
				continue
			}
			err := row.merge(ctx, m)
			if row.failed != nil {
				return row.failed
			}
			outcomes[i] = err
		}
		if err := row.writeJournal(ctx); err != nil {
			return err
		}
		return mapError(tx.Commit())
	}()
	row.settle(err)
	s.lastFailed.Store(err != nil)
	if isFull(err) {
		s.reserve.full.Store(true)
	}
	return outcomes, err
}

// batchRow is a user's row inside the writer's transaction: a user merged
// twice in one batch sees the batch's own first write. The transaction
// began IMMEDIATE and holds the database's write lock, which keeps every
// other writer out.
type batchRow struct {
	s       *Store
	tx      *sql.Tx
	pending map[string]known // written in this batch, not yet committed
	journal *sqlstore.Journal
	// What the histories of the batch's users hold with its records, and
	// the knowledge's generation when the batch began.
	usages     map[string]sqlstore.Usage
	generation uint64
	failed     error // a database error, which aborts the batch
}

// LoadForUpdate reads what the batch wrote, or else what the writer knows
// is committed, or else the rows. This process is the file's only writer
// (see lockFile), so what it committed last is what the rows hold.
func (r *batchRow) LoadForUpdate(ctx context.Context, user string) (userattrs.Attributes, error) {
	k, err := r.current(ctx, user)
	return k.attrs, err
}

func (r *batchRow) current(ctx context.Context, user string) (known, error) {
	if k, ok := r.pending[user]; ok {
		return k, nil
	}
	if k, ok := r.s.known.lookup(user); ok {
		return k, nil
	}
	attrs, err := load(ctx, r.tx.StmtContext(ctx, r.s.lockRow), user)
	if err != nil {
		if !errors.Is(err, sqlstore.ErrUndecodable) {
			r.failed = err
		}
		return known{}, err
	}
	k := known{attrs, knownSize(user, attrs)}
	r.s.known.put(user, k)
	return k, nil
}

// merge applies m: as prepared, when what it was prepared against is still
// the user's current attributes, or else by running its updater now.
func (r *batchRow) merge(ctx context.Context, m *sqlstore.Merge) error {
	if p, ok := m.Prepared.(*prepared); ok && p != nil {
		current, err := r.current(ctx, m.User)
		if err != nil {
			return err
		}
		if store.Same(current.attrs, p.base) {
			if p.err != nil || !p.changed {
				return p.err
			}
			return r.write(ctx, m.User, p.changes, p.next, &p.record)
		}
	}
	return sqlstore.Apply(ctx, r, m)
}

// Save writes the rows of the attributes the change set or removed, and
// only those.
func (r *batchRow) Save(ctx context.Context, user string, _, next userattrs.Attributes, rec *userattrs.Record) error {
	current, err := r.current(ctx, user) // what LoadForUpdate returned: no read
	if err != nil {
		return err
	}
	changes, k := plan(current, next, rec)
	return r.write(ctx, user, changes, k, rec)
}

// change is one attribute row to write: its values as the column holds
// them, or its removal.
type change struct {
	name, values string
	remove       bool
}

// plan works out the rows that turn current into next, and next's size,
// from current's and the record of the change: the attributes a merge
// leaves as they were cost nothing here.
func plan(current known, next userattrs.Attributes, rec *userattrs.Record) ([]change, known) {
	changes := make([]change, 0, len(rec.Set)+len(rec.Removed))
	size := current.size + (len(next)-len(current.attrs))*knownAttributeOverhead
	for name, values := range rec.Set {
		if old, ok := current.attrs[name]; ok {
			size -= userattrs.SizeOf(name, old)
		}
		size += userattrs.SizeOf(name, values)
		// As a string, which SQLite keeps as TEXT, what its JSON
		// functions read as JSON text.
		changes = append(changes, change{name: name, values: string(sqlstore.AppendValues(nil, values))})
	}
	for _, name := range rec.Removed {
		size -= userattrs.SizeOf(name, current.attrs[name])
		changes = append(changes, change{name: name, remove: true})
	}
	return changes, known{next, size}
}

// write writes the rows of changes, after which the user's attributes in
// this batch are next, and keeps the record of the change.
func (r *batchRow) write(ctx context.Context, user string, changes []change, next known, rec *userattrs.Record) error {
	now := time.Now().UnixMilli()
	upsert, remove := r.tx.StmtContext(ctx, r.s.upsert), r.tx.StmtContext(ctx, r.s.remove)
	for _, c := range changes {
		var err error
		if c.remove {
			_, err = remove.ExecContext(ctx, user, c.name)
		} else {
			_, err = upsert.ExecContext(ctx, user, c.name, c.values, now)
		}
		if err != nil {
			r.failed = mapError(err)
			return r.failed
		}
	}
	r.pending[user] = next
	r.journal.Add(rec)
	return nil
}

// writeJournal writes the records of the batch's changes to the history,
// and their events, and those of its erasures, to the outbox when events
// are on, in the order they were made: one statement each, whatever the
// batch's size (a batch holds at most maxBatch changes).
func (r *batchRow) writeJournal(ctx context.Context) error {
	records := r.journal.Records
	if len(records) == 0 {
		return nil
	}
	at := records[0].Time.UnixMilli()
	if r.s.bounds.Off {
		return r.writeEvents(ctx, at, nil)
	}
	args := make([]any, 0, 11*len(records))
	added := make(map[string]sqlstore.Usage, len(r.pending))
	for i := range records {
		rec := &records[i]
		if rec.Erased {
			// An erasure's record is kept apart (user_erasure), not in
			// the history it ended.
			continue
		}
		c := sqlstore.Columns(rec)
		args = append(args, rec.ID, rec.User, at, c.ActorType, c.ActorID, rec.ClientID, rec.RequestID, c.Set, c.Removed, c.Changed, c.Size)
		added[rec.User] = added[rec.User].With(c.Size)
	}
	if err := r.exec(ctx, r.s.records, len(args)/11, 11, args); err != nil {
		return err
	}
	if err := r.bound(ctx, added); err != nil {
		return err
	}
	return r.writeEvents(ctx, at, args[:0])
}

// writeEvents writes the events of the batch's records to the outbox when
// events are on, with args as room for the statements' arguments.
func (r *batchRow) writeEvents(ctx context.Context, at int64, args []any) error {
	if !r.s.eventsOn {
		return nil
	}
	records := r.journal.Records
	for i := range records {
		args = append(args, store.OutboxPartition(records[i].User), records[i].User, at, sqlstore.EventData(&records[i]))
	}
	return r.exec(ctx, r.s.events, len(records), 4, args)
}

// bound adds to each user's history usage what the batch's records add,
// and removes the oldest records of those it takes past the bounds.
func (r *batchRow) bound(ctx context.Context, added map[string]sqlstore.Usage) error {
	for user, add := range added {
		usage, err := r.usage(ctx, user, add)
		if err != nil {
			return err
		}
		if usage.Over(r.s.bounds) {
			if usage, err = r.trim(ctx, user, usage); err != nil {
				return err
			}
		}
		r.usages[user] = usage
	}
	return nil
}

// usage is what the history of user holds once the batch's records, add,
// are in: as the batch or the writer's knowledge has it, or else counted
// from the rows, the batch's own among them.
func (r *batchRow) usage(ctx context.Context, user string, add sqlstore.Usage) (sqlstore.Usage, error) {
	u, ok := r.usages[user] // an erasure earlier in the batch
	if !ok {
		u, ok = r.s.known.usage(user)
	}
	if ok {
		return sqlstore.Usage{Records: u.Records + add.Records, Bytes: u.Bytes + add.Bytes}, nil
	}
	err := r.tx.StmtContext(ctx, r.s.countUsage).QueryRowContext(ctx, user).Scan(&u.Records, &u.Bytes)
	return u, mapError(err)
}

// trim removes the oldest records of user that take usage past the bounds,
// and returns what the history then holds.
func (r *batchRow) trim(ctx context.Context, user string, usage sqlstore.Usage) (sqlstore.Usage, error) {
	through, kept, err := sqlstore.Trim(r.s.bounds, usage, func(after int64, n int) ([]sqlstore.SizedSeq, error) {
		rows, err := r.tx.StmtContext(ctx, r.s.oldest).QueryContext(ctx, user, after, n)
		if err != nil {
			return nil, mapError(err)
		}
		defer rows.Close()
		var oldest []sqlstore.SizedSeq
		for rows.Next() {
			var row sqlstore.SizedSeq
			if err := rows.Scan(&row.Seq, &row.Size); err != nil {
				return nil, mapError(err)
			}
			oldest = append(oldest, row)
		}
		return oldest, mapError(rows.Err())
	})
	if err != nil {
		return usage, err
	}
	if _, err := r.tx.StmtContext(ctx, r.s.trimRecords).ExecContext(ctx, user, through); err != nil {
		return usage, mapError(err)
	}
	return kept, nil
}

// exec inserts n rows of args, width values each, in the batch's
// transaction, with the prepared inserts of stmts whose sizes add up to n:
// at most one per power of two.
func (r *batchRow) exec(ctx context.Context, stmts map[int]*sql.Stmt, n, width int, args []any) error {
	for size := maxBatch; n > 0; size /= 2 {
		for n >= size {
			if _, err := r.tx.StmtContext(ctx, stmts[size]).ExecContext(ctx, args[:size*width]...); err != nil {
				return mapError(err)
			}
			args, n = args[size*width:], n-size
		}
	}
	return nil
}

// settle tells the writer's knowledge what became of the batch: what it
// wrote is committed, or, when the transaction failed, unknown, so the
// next merge of those users reads their rows.
func (r *batchRow) settle(err error) {
	r.s.known.settleUsages(r.generation, r.usages, err == nil)
	for user, k := range r.pending {
		if err == nil {
			r.s.known.put(user, k)
		} else {
			r.s.known.remove(user)
		}
	}
}
