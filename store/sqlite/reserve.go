package sqlite

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"

	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// DefaultReserve is the room the store sets aside beside the database
// unless told otherwise.
const DefaultReserve = 4 << 20

// reserve is a file of zeros beside the database that holds disk space for
// the one write that must succeed on a full disk: deleting delivered
// events. Without it, a full disk keeps the outbox from draining, and the
// same events go out again on every attempt. Writes of changes never use
// it: they fail (503) on a full disk, and readiness with them.
type reserve struct {
	path string
	dir  string
	size int64
	// used: released to let a delete through, to be made again once the
	// disk has room; full: a write failed for lack of space.
	used, full atomic.Bool
}

func newReserve(dbPath string, size int64) *reserve {
	return &reserve{path: dbPath + "-reserve", dir: filepath.Dir(dbPath), size: size}
}

// make writes the reserve's zeros, so that the file system allocates its
// blocks (a sparse file would hold nothing).
func (r *reserve) make() error {
	if r.size <= 0 {
		return nil
	}
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	zeros := make([]byte, 64<<10)
	for written := int64(0); written < r.size; written += int64(len(zeros)) {
		if _, err := f.Write(zeros[:min(int64(len(zeros)), r.size-written)]); err != nil {
			f.Close()
			os.Truncate(r.path, 0)
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// release gives the reserve's room back to the file system, once, and
// reports whether it had any to give.
func (r *reserve) release() bool {
	if r.size <= 0 || r.used.Swap(true) {
		return false
	}
	return os.Truncate(r.path, 0) == nil
}

// recover checks, after a write failed for lack of space or the reserve
// was used, that the disk has room again, and makes the reserve again. It
// fails, saying how full the disk is, until then.
func (r *reserve) recover() error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(r.dir, &st); err != nil {
		return fmt.Errorf("sqlite: statfs: %w", err)
	}
	if free := int64(st.Bavail) * st.Bsize; free < r.size+minFree {
		return fmt.Errorf("the disk holding the database is full: %d bytes free, fewer than the %d this store keeps in reserve and needs to write",
			free, r.size+minFree)
	}
	if r.used.Load() {
		if err := r.make(); err != nil {
			return fmt.Errorf("sqlite: make the reserve again: %w", err)
		}
		r.used.Store(false)
	}
	r.full.Store(false)
	return nil
}

// minFree is the room, beyond the reserve, that a disk must have before
// writes are tried again: a batch's worth of changes.
const minFree = 1 << 20

// isFull reports whether err is SQLite's "database or disk is full".
func isFull(err error) bool {
	var e *sqlite.Error
	return errors.As(err, &e) && e.Code()&0xff == sqlite3.SQLITE_FULL
}
