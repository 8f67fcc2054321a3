package sqlite

import (
	"sync"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/internal/bounded"
	"github.com/userattrs/userattrs/store"
	"github.com/userattrs/userattrs/store/sqlstore"
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
//
// It also holds what recent users' histories hold (usages), so that a
// merge's records add to a count in memory instead of a tally row the
// batch would write and read back: a user not known here is counted from
// the history's rows. Pruning, which removes records outside the writer's
// batches, forgets the counts of the users it touched and moves the
// generation on, so that a batch which began before it keeps none of its
// counts.
type knowledge struct {
	mu         sync.Mutex
	users      *bounded.Map[userattrs.Attributes]
	usages     *bounded.Map[sqlstore.Usage]
	generation uint64
}

func (k *knowledge) usage(user string) (sqlstore.Usage, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.usages.Get(user)
}

// currentGeneration is what a batch notes before it begins.
func (k *knowledge) currentGeneration() uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.generation
}

// settleUsages keeps the counts a batch of generation gen committed, or
// forgets them when its transaction failed or pruning came in between.
func (k *knowledge) settleUsages(gen uint64, counts map[string]sqlstore.Usage, committed bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for user, u := range counts {
		if committed && gen == k.generation {
			k.usages.Put(user, u, 1) // bounded by count alone: every entry is alike
		} else {
			k.usages.Remove(user)
		}
	}
}

// forgetUsages forgets the counts of users, whose records pruning removes.
func (k *knowledge) forgetUsages(users map[string]bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.generation++
	for user := range users {
		k.usages.Remove(user)
	}
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
