package sqlite

import (
	"sync"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/internal/bounded"
	"github.com/userattrs/userattrs/store"
)

// prepared is a merge worked out against attributes the writer knew.
type prepared struct {
	base    userattrs.Attributes // what update was given
	err     error                // what it returned
	changed bool
	next    known
	changes []change
	record  userattrs.Record
}

func prepare(user string, origin userattrs.Origin, k known, update func(userattrs.Attributes) (userattrs.Attributes, error)) *prepared {
	next, changed, err := store.Next(k.attrs, update)
	p := &prepared{base: k.attrs, err: err, changed: changed}
	if err == nil && changed {
		p.record = userattrs.NewRecord(user, origin, k.attrs, next)
		p.changes, p.next = plan(k, next, &p.record)
	}
	return p
}

// knowledge is the attributes of users as the writer last committed or
// read them, within bounds; the writer changes it, and merges read it to
// prepare themselves.
type knowledge struct {
	mu    sync.Mutex
	users *bounded.Map[userattrs.Attributes]
}

func (k *knowledge) lookup(user string) (known, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	attrs, size, ok := k.users.Lookup(user)
	return known{attrs, size}, ok
}

func (k *knowledge) put(user string, kn known) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.users.Put(user, kn.attrs, kn.size)
}

func (k *knowledge) remove(user string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.users.Remove(user)
}

// known is a user's attributes as the writer knows them, and their size in
// the writer's knowledge (see knownSize), kept up to date by each merge
// instead of counted again.
type known struct {
	attrs userattrs.Attributes
	size  int
}

// knownSize is what a user's entry in the writer's knowledge counts against
// its bytes: names and values, and roughly the map slots and headers
// around them.
func knownSize(user string, attrs userattrs.Attributes) int {
	return 64 + len(user) + attrs.Size() + knownAttributeOverhead*len(attrs)
}

const knownAttributeOverhead = 56
