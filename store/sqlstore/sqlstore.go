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
	// LoadForUpdate returns the stored attributes column of user, nil when
	// the user has no row, and keeps the row locked against other writers
	// until the transaction ends.
	LoadForUpdate(ctx context.Context, user string) ([]byte, error)
	// Save writes the attributes column of user.
	Save(ctx context.Context, user string, column []byte, empty bool) error
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

// Encode writes an attributes column.
func Encode(attrs userattrs.Attributes) ([]byte, error) {
	return jsontext.Marshal(attrs)
}

// Apply runs the updater of a Store.Update against row, inside the caller's
// transaction: it loads the current attributes under a lock, asks update
// for the next ones and saves them if they changed. The caller commits.
func Apply(ctx context.Context, row Row, user string, update func(userattrs.Attributes) (userattrs.Attributes, error)) error {
	column, err := row.LoadForUpdate(ctx, user)
	if err != nil {
		return err
	}
	current, err := Decode(column)
	if err != nil {
		return err
	}
	next, changed, err := userattrs.Next(current, update)
	if err != nil || !changed {
		return err
	}
	encoded, err := Encode(next)
	if err != nil {
		return fmt.Errorf("encode attributes: %w", err)
	}
	return row.Save(ctx, user, encoded, len(next) == 0)
}
