package main

import (
	"io"
	"sync"
	"time"
)

// logFlushInterval bounds how long a log line waits in the buffer.
const logFlushInterval = 100 * time.Millisecond

// logFlushSize is how much buffered log makes a writer flush at once.
const logFlushSize = 256 << 10

// bufferedLog collects log lines and writes them out every
// logFlushInterval, when logFlushSize has gathered, and on Close: one
// request line per request would otherwise cost a write system call each. A
// crash loses at most the last interval's lines.
//
// A request's log line is written before its response is flushed, so
// appending must never wait for output: the flush swaps the buffer under
// the lock and writes outside it.
type bufferedLog struct {
	out     io.Writer
	mu      sync.Mutex // guards buf
	buf     []byte
	spare   []byte
	flushMu sync.Mutex // serialises writes to out, and guards spare
	stop    chan struct{}
	done    chan struct{}
}

func newBufferedLog(out io.Writer) *bufferedLog {
	b := &bufferedLog{out: out, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		tick := time.NewTicker(logFlushInterval)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				b.flush()
			case <-b.stop:
				b.flush()
				return
			}
		}
	}()
	return b
}

func (b *bufferedLog) Write(p []byte) (int, error) {
	b.mu.Lock()
	b.buf = append(b.buf, p...)
	full := len(b.buf) >= logFlushSize
	b.mu.Unlock()
	if full {
		b.flush()
	}
	return len(p), nil
}

func (b *bufferedLog) flush() {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	b.mu.Lock()
	out := b.buf
	b.buf = b.spare[:0]
	b.mu.Unlock()
	if len(out) > 0 {
		b.out.Write(out)
	}
	b.spare = out
}

// Close writes out what is buffered and stops the flusher.
func (b *bufferedLog) Close() error {
	close(b.stop)
	<-b.done
	return nil
}
