package userattrs

import "context"

// Store keeps the attributes of users. Every store maps its failures onto
// the shared errors of this package: ErrUserNotFound for an unknown user,
// ErrUnavailable when it cannot answer now.
type Store interface {
	// Get returns all attributes of user; a user without attributes has an
	// empty, non-nil map. Stores that create users on first write (the SQL
	// stores) never return ErrUserNotFound.
	Get(ctx context.Context, user string) (Attributes, error)

	// Update replaces the attributes of user with what update returns, given
	// the current ones, atomically: no other update of the same user comes
	// between the read and the write, on any instance sharing the store.
	// update may be called several times (stores that retry on conflicts do)
	// and must not keep or change its argument. An error from update aborts
	// the change and is returned as it is. When Update returns nil the new
	// attributes are durable.
	Update(ctx context.Context, user string, update func(current Attributes) (Attributes, error)) error

	// Ping checks that the store can serve requests.
	Ping(ctx context.Context) error

	// Close releases the store's resources.
	Close() error
}

// Next runs an updater of Store.Update on current and reports whether the
// attributes it returns differ, so that stores skip writes that change
// nothing.
func Next(current Attributes, update func(Attributes) (Attributes, error)) (next Attributes, changed bool, err error) {
	next, err = update(current)
	if err != nil {
		return nil, false, err
	}
	return next, !next.Equal(current), nil
}
