// Package sqlstore is what the SQL stores share: how a user's attributes are
// kept in one column, and the read-modify-write of a merge inside a
// transaction. Each store brings only its SQL and its driver.
package sqlstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/internal/jsontext"
	"github.com/userattrs/userattrs/store"
)

// Row is one user's stored attributes, read and written inside a store's
// transaction.
type Row interface {
	// LoadForUpdate returns the current attributes of user, empty when the
	// user has none stored, and keeps them locked against other writers
	// until the transaction ends. The caller does not modify them.
	LoadForUpdate(ctx context.Context, user string) (userattrs.Attributes, error)
	// Save replaces the attributes of user, current as LoadForUpdate
	// returned them, with next, which the store may keep: nobody modifies
	// either from now on. rec is the record of the change, which the
	// store writes in the same transaction (see Journal).
	Save(ctx context.Context, user string, current, next userattrs.Attributes, rec *userattrs.Record) error
}

// ErrUndecodable is stored data that does not decode: a fault of that
// user's data, which fails their merges and reads, and no one else's.
var ErrUndecodable = errors.New("the stored attributes do not decode")

// Decode reads an attributes column: a JSON object of arrays of strings. No
// row means no attributes.
func Decode(column []byte) (userattrs.Attributes, error) {
	attrs := userattrs.Attributes{}
	if column == nil {
		return attrs, nil
	}
	if err := json.Unmarshal(column, &attrs); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUndecodable, err)
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
		b = append(b, ':')
		b = AppendValues(b, vs)
	}
	return append(b, '}')
}

// AppendValues appends an attribute's values as a JSON array of strings.
func AppendValues(b []byte, values []string) []byte {
	b = append(b, '[')
	for i, v := range values {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsontext.AppendString(b, v)
	}
	return append(b, ']')
}

// DecodeValues reads what AppendValues wrote. One value with nothing
// escaped, what almost every attribute holds, is read without
// encoding/json.
func DecodeValues(text string) ([]string, error) {
	if len(text) >= 4 && text[0] == '[' && text[1] == '"' && text[len(text)-2] == '"' && text[len(text)-1] == ']' {
		if v := text[2 : len(text)-2]; !strings.ContainsAny(v, `"\`) {
			return []string{v}, nil
		}
	}
	var values []string
	if err := json.Unmarshal([]byte(text), &values); err != nil || len(values) == 0 {
		return nil, fmt.Errorf("%w: %w", ErrUndecodable, cmp.Or(err, errors.New("an attribute without values")))
	}
	return values, nil
}

// Apply runs the updater of a merge against row, inside the caller's
// transaction: it loads the current attributes under a lock, asks the
// updater for the next ones and saves them, with the record of the change,
// if they changed. The caller commits.
func Apply(ctx context.Context, row Row, m *Merge) error {
	current, err := row.LoadForUpdate(ctx, m.User)
	if err != nil {
		return err
	}
	next, changed, err := store.Next(current, m.Update)
	if err != nil || !changed {
		return err
	}
	rec := userattrs.NewRecord(m.User, m.Origin, current, next)
	return row.Save(ctx, m.User, current, next, &rec)
}
