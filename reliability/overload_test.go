package reliability_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/reliability"
	"github.com/userattrs/userattrs/store/memory"
)

// slowStore serves at most four operations at once, each taking 20 ms: a
// store that saturates at 200 operations a second, whatever the machine.
type slowStore struct {
	userattrs.Store
	slots chan struct{}
}

func (s *slowStore) work(ctx context.Context) error {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	time.Sleep(20 * time.Millisecond)
	<-s.slots
	return nil
}

func (s *slowStore) Update(ctx context.Context, user string, update func(userattrs.Attributes) (userattrs.Attributes, error)) error {
	if err := s.work(ctx); err != nil {
		return err
	}
	return s.Store.Update(ctx, user, update)
}

// Four times the load the store saturates at, sent open loop (a new
// request every 1.25 ms, whatever the answers), without and with the bound
// on store operations. Without it, requests queue until their timeout; with
// it, the excess is answered 503 at once and the requests that get through
// stay fast. The p99 of those is reported, not asserted: CI asserts
// statuses and losses only.
func TestOverload(t *testing.T) {
	const rate, duration = 800, 3 * time.Second
	for _, bound := range []int{0, 8} {
		name := "overload 4× (no bound on store operations)"
		if bound > 0 {
			name = fmt.Sprintf("overload 4× (--max-store-operations %d)", bound)
		}
		t.Run(name, func(t *testing.T) {
			mem := memory.New()
			limits := userattrs.DefaultLimits
			limits.MaxAttributes, limits.MaxUserBytes = 1<<20, 1<<30
			svc := userattrs.NewService(&slowStore{Store: mem, slots: make(chan struct{}, 4)},
				userattrs.ServiceConfig{Limits: limits, StoreTimeout: storeTimeout, MaxStoreOperations: bound})
			users := []string{"u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7"}
			tokens, verifier := devTokens(t, users...)
			url, stop := serve(t, svc, verifier)
			defer stop()

			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1024}}
			defer client.CloseIdleConnections()
			var mu sync.Mutex
			answers := map[int]int64{}
			var through []time.Duration
			acked := map[string][]string{}
			var wg sync.WaitGroup
			tick := time.NewTicker(time.Second / rate)
			defer tick.Stop()
			end := time.Now().Add(duration)
			for n := 0; time.Now().Before(end); n++ {
				<-tick.C
				user := users[n%len(users)]
				key := fmt.Sprintf("k%d", n)
				wg.Go(func() {
					req, _ := http.NewRequest("PUT", url+"/user/2024-3/attributes", strings.NewReader(`{"`+key+`":"v"}`))
					req.Header.Set("Authorization", "Bearer "+tokens[user])
					start := time.Now()
					resp, err := client.Do(req)
					took := time.Since(start)
					status := 0
					if err == nil {
						resp.Body.Close()
						status = resp.StatusCode
					}
					mu.Lock()
					defer mu.Unlock()
					answers[status]++
					if status == 204 {
						through = append(through, took)
						acked[user] = append(acked[user], key)
					}
				})
			}
			wg.Wait()

			for status, n := range answers {
				if status != 204 && status != 503 {
					t.Errorf("%d requests answered %d", n, status)
				}
			}
			if answers[503] == 0 || answers[204] == 0 {
				t.Errorf("answers %v: want both 204 and 503 at four times the capacity", answers)
			}
			lost, total := 0, 0
			for user, keys := range acked {
				got, err := mem.Get(context.Background(), user)
				if err != nil {
					t.Fatal(err)
				}
				for _, k := range keys {
					total++
					if _, ok := got[k]; !ok {
						lost++
						t.Errorf("user %s: acknowledged key %s is lost", user, k)
					}
				}
			}
			slices.Sort(through)
			p99 := time.Duration(0)
			if len(through) > 0 {
				p99 = through[len(through)*99/100]
			}
			reliability.Report(t.Logf, reliability.Row{Scenario: name, Answers: answers, Acked: total, Lost: lost,
				Note: fmt.Sprintf("p99 of the 204s %d ms", p99.Milliseconds())})
		})
	}
}
