package keycloak

import (
	"context"
	"sync"
)

// userLocks serialises the merges of each user; entries live only while a
// merge of that user runs or waits. Waiting ends with the waiter's context,
// so that waiters do not pile up behind a slow holder.
type userLocks struct {
	mu    sync.Mutex
	users map[string]*userLock
}

type userLock struct {
	held    chan struct{} // holds a token while the lock is held
	waiters int
}

func (l *userLocks) lock(ctx context.Context, user string) (unlock func(), err error) {
	l.mu.Lock()
	if l.users == nil {
		l.users = map[string]*userLock{}
	}
	ul, ok := l.users[user]
	if !ok {
		ul = &userLock{held: make(chan struct{}, 1)}
		l.users[user] = ul
	}
	ul.waiters++
	l.mu.Unlock()

	release := func() {
		l.mu.Lock()
		ul.waiters--
		if ul.waiters == 0 {
			delete(l.users, user)
		}
		l.mu.Unlock()
	}
	select {
	case ul.held <- struct{}{}:
		return func() {
			<-ul.held
			release()
		}, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}
