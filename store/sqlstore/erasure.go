package sqlstore

import (
	"time"

	"github.com/userattrs/userattrs"
)

// ErasureColumns are the columns of an erasure row that ScanErasure reads,
// in its order, with the time as Unix milliseconds named at_ms.
const ErasureColumns = "id, user_id, at_ms, actor_type, actor_id, client_id, request_id"

// ErasureValues returns the values of rec's erasure row, in the order of
// ErasureColumns.
func ErasureValues(rec *userattrs.Record) []any {
	return []any{rec.ID, rec.User, rec.Time.UnixMilli(), rec.Actor.Type, rec.Actor.ID, rec.ClientID, rec.RequestID}
}

// ScanErasure reads an erasure row selected as ErasureColumns.
func ScanErasure(scan func(dest ...any) error) (userattrs.Record, error) {
	r := userattrs.Record{Erased: true, Set: userattrs.Attributes{}, Removed: []string{}}
	var ms int64
	err := scan(&r.ID, &r.User, &ms, &r.Actor.Type, &r.Actor.ID, &r.ClientID, &r.RequestID)
	r.Time = time.UnixMilli(ms).UTC()
	return r, err
}

// MaxUsersPage bounds a page of Inventory.Users.
const MaxUsersPage = 10000
