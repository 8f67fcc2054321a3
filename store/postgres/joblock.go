package postgres

import (
	"context"
	"hash/fnv"

	"github.com/userattrs/userattrs"
)

var _ userattrs.JobLock = (*Store)(nil)

// TryLock takes a session advisory lock named after job on a connection
// of its own, which it keeps until unlock: the instance whose connection
// holds it runs the job, and a crashed instance's lock ends with its
// connection.
func (s *Store) TryLock(ctx context.Context, job string) (unlock func(), ok bool, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, mapError(err)
	}
	h := fnv.New64a()
	h.Write([]byte("userattrs:" + job))
	key := int64(h.Sum64())
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&ok); err != nil || !ok {
		conn.Release()
		return nil, false, mapError(err)
	}
	return func() {
		if _, err := conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", key); err != nil {
			// The session may still hold it: a connection that goes
			// back to the pool must not.
			conn.Conn().Close(context.Background())
		}
		conn.Release()
	}, true, nil
}
