package sqlstore

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/userattrs/userattrs"
)

// Journal is the records of one transaction's changes, which the store
// writes in that transaction: to its history always, and to its outbox
// when events are on. No change commits without its record, and no record
// without its change.
type Journal struct {
	at      time.Time
	Records []userattrs.Record
}

// NewJournal starts the journal of a transaction; its records carry the
// transaction's time, in the milliseconds the history keeps.
func NewJournal() *Journal {
	return &Journal{at: time.UnixMilli(time.Now().UnixMilli()).UTC()}
}

// Add keeps the record of a change the transaction makes.
func (j *Journal) Add(rec *userattrs.Record) {
	rec.Time = j.at
	j.Records = append(j.Records, *rec)
}

// HistoryColumns are the columns of a history row that ScanRecord reads,
// in its order, with the time as Unix milliseconds named at_ms.
const HistoryColumns = "seq, id, user_id, at_ms, actor_type, actor_id, client_id, request_id, set_values, removed_keys"

// RecordColumns are the values of a record's history row, but its time.
type RecordColumns struct {
	ActorType, ActorID string
	// Set and Removed as JSON, and Changed, the keys of both, as a JSON
	// array: what the key filter reads.
	Set, Removed, Changed string
	// Size is what the row counts against HistoryBounds.MaxBytes: the
	// bytes of its text columns.
	Size int64
}

// Columns returns the columns of rec's history row.
func Columns(rec *userattrs.Record) RecordColumns {
	changed := make([]string, 0, len(rec.Set)+len(rec.Removed))
	for k := range rec.Set {
		changed = append(changed, k)
	}
	changed = append(changed, rec.Removed...)
	c := RecordColumns{ActorType: rec.Actor.Type, ActorID: rec.Actor.ID,
		Set: string(Encode(rec.Set)), Removed: string(AppendValues(nil, rec.Removed)), Changed: string(AppendValues(nil, changed))}
	c.Size = int64(len(rec.ID) + len(rec.User) + len(c.ActorType) + len(c.ActorID) + len(rec.ClientID) + len(rec.RequestID) +
		len(c.Set) + len(c.Removed) + len(c.Changed))
	return c
}

// Usage is what one user's history holds.
type Usage struct {
	Records int
	Bytes   int64
}

// With returns u with one more record of size bytes.
func (u Usage) With(size int64) Usage { return Usage{Records: u.Records + 1, Bytes: u.Bytes + size} }

// Over reports whether u breaks b.
func (u Usage) Over(b userattrs.HistoryBounds) bool {
	return b.MaxRecords > 0 && u.Records > b.MaxRecords || b.MaxBytes > 0 && u.Bytes > b.MaxBytes
}

// SizedSeq is a history row's seq and size.
type SizedSeq struct {
	Seq, Size int64
}

// trimChunk is how many of a user's oldest rows Trim reads at a time: at
// the bound, a change drops about one.
const trimChunk = 16

// Trim decides which of a user's oldest records go so that what remains
// of usage keeps to b: those with a seq up to through (0: none). oldest
// returns, in seq order, the user's n oldest rows after a seq. Should the
// rows run out while usage is still over b (a bound below what one batch
// adds), everything read goes.
func Trim(b userattrs.HistoryBounds, usage Usage, oldest func(after int64, n int) ([]SizedSeq, error)) (through int64, kept Usage, err error) {
	for usage.Over(b) {
		// Far past the record bound (a bound just lowered), read the
		// excess at once, up to a page.
		rows, err := oldest(through, min(max(trimChunk, usage.Records-b.MaxRecords), MaxHistoryPage))
		if err != nil {
			return 0, usage, err
		}
		if len(rows) == 0 {
			return through, usage, nil
		}
		for _, r := range rows {
			if !usage.Over(b) {
				break
			}
			through, usage.Records, usage.Bytes = r.Seq, usage.Records-1, usage.Bytes-r.Size
		}
	}
	return through, usage, nil
}

// ScanRecord reads a history row selected as HistoryColumns.
func ScanRecord(scan func(dest ...any) error) (userattrs.Record, error) {
	var r userattrs.Record
	var ms int64
	var set, removed string
	if err := scan(&r.Seq, &r.ID, &r.User, &ms, &r.Actor.Type, &r.Actor.ID, &r.ClientID, &r.RequestID, &set, &removed); err != nil {
		return r, err
	}
	r.Time = time.UnixMilli(ms).UTC()
	var err error
	if r.Set, err = Decode([]byte(set)); err != nil {
		return r, err
	}
	if err := json.Unmarshal([]byte(removed), &r.Removed); err != nil {
		return r, fmt.Errorf("%w: %w", ErrUndecodable, err)
	}
	return r, nil
}

// EventData is what an outbox row keeps of a record: the record as JSON,
// which is the data of its event.
func EventData(rec *userattrs.Record) string {
	b, _ := json.Marshal(rec) // a Record always encodes
	return string(b)
}

// DecodeEvent reads an outbox row's record.
func DecodeEvent(seq int64, data string) (userattrs.Record, error) {
	var r userattrs.Record
	if err := json.Unmarshal([]byte(data), &r); err != nil {
		return r, fmt.Errorf("%w: outbox event %d: %w", ErrUndecodable, seq, err)
	}
	r.Seq = seq
	return r, nil
}

// Done returns the seqs of the events that done reports delivered, which
// the store deletes.
func Done(events []userattrs.Record, done []bool) []int64 {
	var seqs []int64
	for i, d := range done {
		if d {
			seqs = append(seqs, events[i].Seq)
		}
	}
	return seqs
}

// AppendSeqs appends seqs as a JSON array, for stores without arrays.
func AppendSeqs(b []byte, seqs []int64) []byte {
	b = append(b, '[')
	for i, s := range seqs {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, s, 10)
	}
	return append(b, ']')
}

// PageStart is the seq a history page starts below: q.Before, or past every
// seq for the newest page. A plain "seq < ?" lets the query walk the
// (user_id, seq) index from the cursor on; "? = 0 OR seq < ?" made it read
// every newer record first, so that a deep cursor cost its depth.
func PageStart(q userattrs.HistoryQuery) int64 {
	if q.Before == 0 {
		return math.MaxInt64
	}
	return q.Before
}

// MaxHistoryPage bounds the records one history query returns.
const MaxHistoryPage = 1000

// Users returns the users of events, each once.
func Users(events []userattrs.Record) []string {
	users := make([]string, 0, len(events))
	seen := make(map[string]bool, len(events))
	for i := range events {
		if u := events[i].User; !seen[u] {
			seen[u] = true
			users = append(users, u)
		}
	}
	return users
}

// JSONStrings encodes strings as a JSON array, for stores without arrays.
func JSONStrings(s []string) string {
	b, _ := json.Marshal(s) // strings always encode
	return string(b)
}
