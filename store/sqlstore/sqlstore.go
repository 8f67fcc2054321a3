// Package sqlstore is what the SQL stores share: how a user's attributes are
// kept in one column, and the read-modify-write of a merge inside a
// transaction. Each store brings only its SQL and its driver.
package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/internal/jsontext"
)

// Row is one user's row, read and written inside a store's transaction.
type Row interface {
	// LoadForUpdate returns the current attributes of user, empty when the
	// user has no row, and keeps the row locked against other writers until
	// the transaction ends. The caller does not modify them.
	LoadForUpdate(ctx context.Context, user string) (userattrs.Attributes, error)
	// Save writes the attributes of user, which the store may keep: nobody
	// modifies them from now on.
	Save(ctx context.Context, user string, next userattrs.Attributes) error
}

// Decode reads an attributes column: a JSON object of arrays of strings. No
// row means no attributes.
func Decode(column []byte) (userattrs.Attributes, error) {
	attrs := userattrs.Attributes{}
	if column == nil {
		return attrs, nil
	}
	if err := json.Unmarshal(column, &attrs); err != nil {
		return nil, fmt.Errorf("decode stored attributes: %w", err)
	}
	return attrs, nil
}

// Encode writes an attributes column, members in no particular order: it
// is written on every merge, and sorting the keys would be most of its
// cost.
func Encode(attrs userattrs.Attributes) []byte {
	size := 2
	for k, vs := range attrs {
		size += len(k) + 6
		for _, v := range vs {
			size += len(v) + 3
		}
	}
	b := make([]byte, 0, size)
	b = append(b, '{')
	for k, vs := range attrs {
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = jsontext.AppendString(b, k)
		b = append(b, ':', '[')
		for i, v := range vs {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsontext.AppendString(b, v)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// Apply runs the updater of a Store.Update against row, inside the caller's
// transaction: it loads the current attributes under a lock, asks update
// for the next ones and saves them if they changed. The caller commits.
func Apply(ctx context.Context, row Row, user string, update func(userattrs.Attributes) (userattrs.Attributes, error)) error {
	current, err := row.LoadForUpdate(ctx, user)
	if err != nil {
		return err
	}
	next, changed, err := userattrs.Next(current, update)
	if err != nil || !changed {
		return err
	}
	return row.Save(ctx, user, next)
}
