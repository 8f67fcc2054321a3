package sqlstore

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/userattrs/userattrs"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Batcher group-commits merges: writer goroutines each take the first merge
// waiting and every other already queued, up to a batch's bound, and apply
// them in one transaction of the store's, so that concurrent merges share
// one commit (one fsync) instead of each waiting for its own.
//
// A merge whose caller gave up before a writer took it is never applied;
// one a writer took is always answered.
//
// Reads can share a query the same way: the PostgreSQL store runs its
// reads through a Batcher of their own, whose Commit fetches the batch's
// users and leaves each read's attributes in its Prepared.
type Batcher struct {
	merges  chan *Merge
	closing chan struct{} // closed by Close: no more merges are taken
	stopped chan struct{} // closed when every writer has finished
	close   sync.Once
}

// Merge is one Store.Update waiting for a writer.
type Merge struct {
	User string
	// Update is the caller's updater; nil for what is not a merge: a write
	// of the store's own (the SQLite store's readiness probe), or a read.
	Update func(userattrs.Attributes) (userattrs.Attributes, error)
	// Prepared is what the store worked out for the merge before handing
	// it over, if anything; for a read, where its Commit leaves what it
	// read.
	Prepared any
	// Origin is who asked for the merge, for the record of its change.
	Origin userattrs.Origin
	// state decides, once, whether a writer takes the merge or its caller
	// gives it up.
	state atomic.Int32
	done  chan error
	// batch is the size of the transaction the merge rode in, set before
	// done is sent, for the merge's span.
	batch int
}

const (
	pending int32 = iota
	taken
	abandoned
)

// Commit applies a batch in one transaction and returns each merge's
// outcome (an updater's refusal changes nothing but its own merge), or err
// for all of them when the transaction failed.
type Commit func(batch []*Merge) (outcomes []error, err error)

// NewBatcher starts writers goroutines that apply batches of at most
// maxBatch merges through commit, until Close.
func NewBatcher(writers, maxBatch int, commit Commit) *Batcher {
	b := &Batcher{merges: make(chan *Merge, maxBatch*writers), closing: make(chan struct{}), stopped: make(chan struct{})}
	var running sync.WaitGroup
	for range writers {
		running.Go(func() { b.write(maxBatch, commit) })
	}
	go func() {
		running.Wait()
		close(b.stopped)
	}()
	return b
}

// Do hands a merge of user to a writer and returns its outcome once the
// transaction that applied it has committed. When ctx ends first, the
// merge is given up and never applied, unless a writer has taken it
// already: its outcome is then a commit away, and Do waits for it.
func (b *Batcher) Do(ctx context.Context, user string, update func(userattrs.Attributes) (userattrs.Attributes, error), prepared any) error {
	m := &Merge{User: user, Update: update, Prepared: prepared, Origin: userattrs.OriginOf(ctx), done: make(chan error, 1)}
	if b.Closed() {
		return userattrs.ErrClosed
	}
	select {
	case b.merges <- m:
	case <-b.closing:
		return userattrs.ErrClosed
	case <-ctx.Done():
		return ended(ctx)
	}
	select {
	case err := <-m.done:
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			// Within a traced request: say how many merges shared the
			// transaction, which is what a slow commit's span needs.
			span.SetAttributes(attribute.Int("userattrs.store.batch_size", m.batch))
		}
		return err
	case <-ctx.Done():
		if m.state.CompareAndSwap(pending, abandoned) {
			return ended(ctx)
		}
	case <-b.stopped:
		// The writers are gone; they answered every merge they took.
		if m.state.CompareAndSwap(pending, abandoned) {
			return userattrs.ErrClosed
		}
	}
	return <-m.done
}

// Closed reports whether Close was called.
func (b *Batcher) Closed() bool {
	select {
	case <-b.closing:
		return true
	default:
		return false
	}
}

// Close lets the writers finish the batches they took and answers the
// merges still queued with ErrClosed.
func (b *Batcher) Close() {
	b.close.Do(func() { close(b.closing) })
	<-b.stopped
}

func (b *Batcher) write(maxBatch int, commit Commit) {
	batch := make([]*Merge, 0, maxBatch)
	for {
		batch = batch[:0]
		select {
		case m := <-b.merges:
			batch = take(batch, m)
		case <-b.closing:
			b.giveUpQueued()
			return
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case m := <-b.merges:
				batch = take(batch, m)
			default:
				break fill
			}
		}
		if len(batch) == 0 {
			continue
		}
		outcomes, err := commit(batch)
		for i, m := range batch {
			m.batch = len(batch)
			if err != nil {
				m.done <- err
			} else {
				m.done <- outcomes[i]
			}
		}
	}
}

// take adds m to the batch unless its caller gave it up.
func take(batch []*Merge, m *Merge) []*Merge {
	if m.state.CompareAndSwap(pending, taken) {
		return append(batch, m)
	}
	return batch
}

func (b *Batcher) giveUpQueued() {
	for {
		select {
		case m := <-b.merges:
			if m.state.CompareAndSwap(pending, taken) {
				m.done <- userattrs.ErrClosed
			}
		default:
			return
		}
	}
}

// ended is the error of a merge whose caller's context ended before a
// writer took it.
func ended(ctx context.Context) error {
	return fmt.Errorf("%w: %w", userattrs.ErrUnavailable, ctx.Err())
}
