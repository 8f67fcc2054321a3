package reliability

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Load is writers PUTting distinct keys, and optionally readers, through
// some instances until stopped. It remembers every key that got a 204, and
// counts answers overall and inside a marked window (a fault).
type Load struct {
	client   *http.Client
	acked    sync.Map // user -> *sync.Map of key -> struct{}
	all      answers
	window   answers
	inWindow atomic.Bool
	stop     chan struct{}
	wg       sync.WaitGroup
}

type answers struct {
	statuses sync.Map // status -> *atomic.Int64
	slowest  atomic.Int64
}

func (a *answers) add(status int, took time.Duration) {
	c, _ := a.statuses.LoadOrStore(status, new(atomic.Int64))
	c.(*atomic.Int64).Add(1)
	for {
		old := a.slowest.Load()
		if took.Nanoseconds() <= old || a.slowest.CompareAndSwap(old, took.Nanoseconds()) {
			return
		}
	}
}

func (a *answers) count(status int) int64 {
	if c, ok := a.statuses.Load(status); ok {
		return c.(*atomic.Int64).Load()
	}
	return 0
}

func (a *answers) counts() map[int]int64 {
	m := map[int]int64{}
	a.statuses.Range(func(k, v any) bool {
		m[k.(int)] = v.(*atomic.Int64).Load()
		return true
	})
	return m
}

// StartLoad starts one writer per (instance, user) pair, and as many
// readers when reads is set. Each sends at most maxRequests requests.
func StartLoad(instances func() []string, tokens map[string]string, maxRequests int, reads bool) *Load {
	l := &Load{client: &http.Client{Timeout: 10 * time.Second}, stop: make(chan struct{})}
	id := 0
	for i := range len(instances()) {
		for user, tok := range tokens {
			id++
			writer := id
			l.wg.Go(func() { l.run(instances, i, user, tok, maxRequests, writer) })
			if reads {
				l.wg.Go(func() { l.run(instances, i, user, tok, maxRequests, 0) })
			}
		}
	}
	return l
}

// run sends the requests of one writer, or of one reader (writer 0).
func (l *Load) run(instances func() []string, i int, user, tok string, maxRequests, writer int) {
	for n := range maxRequests {
		select {
		case <-l.stop:
			return
		default:
		}
		key := fmt.Sprintf("w%d-%d", writer, n)
		var req *http.Request
		if writer == 0 {
			req, _ = http.NewRequest("GET", instances()[i]+"/user/2025-1/attributes", nil)
		} else {
			req, _ = http.NewRequest("PUT", instances()[i]+"/user/2024-3/attributes", strings.NewReader(`{"`+key+`":"v"}`))
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		during := l.inWindow.Load()
		start := time.Now()
		resp, err := l.client.Do(req)
		took := time.Since(start)
		status := 0
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			status = resp.StatusCode
		}
		l.all.add(status, took)
		if during && l.inWindow.Load() {
			l.window.add(status, took)
		}
		if status == 204 {
			keys, _ := l.acked.LoadOrStore(user, &sync.Map{})
			keys.(*sync.Map).Store(key, struct{}{})
		}
		if err != nil || status >= 500 {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Window marks the requests sent from now until EndWindow, which end
// before it, as the window's.
func (l *Load) Window()    { l.inWindow.Store(true) }
func (l *Load) EndWindow() { l.inWindow.Store(false) }

// Wait waits until every writer and reader has sent all its requests.
func (l *Load) Wait() { l.wg.Wait() }

// Finish stops the load and waits for its requests.
func (l *Load) Finish() {
	close(l.stop)
	l.wg.Wait()
	l.client.CloseIdleConnections()
}

// Count is how many requests got status (0: no answer).
func (l *Load) Count(status int) int64 { return l.all.count(status) }

// Answers are the counts of all the load's answers by status.
func (l *Load) Answers() map[int]int64 { return l.all.counts() }

// CheckOutage checks the answers of a load that ran through an outage:
// some 204s and some 503s, nothing else, none slower than bound.
func (l *Load) CheckOutage(t testing.TB, bound time.Duration) {
	t.Helper()
	if l.all.count(503) == 0 || l.all.count(204) == 0 {
		t.Fatalf("the load saw 204 %d times and 503 %d times", l.all.count(204), l.all.count(503))
	}
	l.CheckAnswers(t, bound, false)
}

// CheckAnswers checks that every answer was a success or a 503 within
// bound, and, with window, only those sent inside the window.
func (l *Load) CheckAnswers(t testing.TB, bound time.Duration, window bool) {
	t.Helper()
	a := &l.all
	if window {
		a = &l.window
	}
	for status, n := range a.counts() {
		if status != 200 && status != 204 && status != 503 {
			t.Errorf("%d requests answered %d", n, status)
		}
	}
	if slowest := time.Duration(a.slowest.Load()); slowest > bound {
		t.Errorf("the slowest request took %s, bound %s", slowest, bound)
	}
}

// WindowCount is how many requests inside the window got status.
func (l *Load) WindowCount(status int) int64 { return l.window.count(status) }

// CheckAcked reads every user through url and fails for any key that got a
// 204 and is missing; it returns the keys acknowledged and those lost.
func (l *Load) CheckAcked(t testing.TB, url string, tokens map[string]string) (acked, lost int) {
	t.Helper()
	for user, tok := range tokens {
		req, _ := http.NewRequest("GET", url+"/user/2025-1/attributes", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := l.client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", user, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var got map[string]any
		if resp.StatusCode != 200 || json.Unmarshal(body, &got) != nil {
			t.Fatalf("GET %s: %d %s", user, resp.StatusCode, body)
		}
		keys, ok := l.acked.Load(user)
		if !ok {
			continue
		}
		keys.(*sync.Map).Range(func(k, _ any) bool {
			acked++
			if _, ok := got[k.(string)]; !ok {
				lost++
				t.Errorf("user %s: acknowledged key %s is lost", user, k)
			}
			return true
		})
	}
	l.client.CloseIdleConnections()
	return acked, lost
}
