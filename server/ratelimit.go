package server

import (
	"hash/maphash"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// RateLimits are optional token buckets per user and per client: the
// sustained requests per second each may send, with bursts of twice that
// (at least one request). Zero turns a limit off.
type RateLimits struct {
	PerUser   float64
	PerClient float64
}

// maxBuckets bounds the buckets kept per limit. A bucket that has filled up
// again is the same as a new one, so those go first; beyond that, dropping
// a bucket only forgives its owner part of a burst.
const maxBuckets = 1 << 16

const bucketShards = 64

// buckets are the token buckets of one limit, keyed by user or client.
type buckets struct {
	limit  rate.Limit
	burst  int
	seed   maphash.Seed
	shards [bucketShards]bucketShard
}

type bucketShard struct {
	mu sync.Mutex
	m  map[string]*rate.Limiter
}

func newBuckets(perSecond float64) *buckets {
	if perSecond <= 0 {
		return nil
	}
	b := &buckets{limit: rate.Limit(perSecond), burst: max(1, int(math.Ceil(2*perSecond))), seed: maphash.MakeSeed()}
	for i := range b.shards {
		b.shards[i].m = map[string]*rate.Limiter{}
	}
	return b
}

// take spends a token of key's bucket, or says how long until one is due.
func (b *buckets) take(key string, now time.Time) (bool, time.Duration) {
	s := &b.shards[maphash.String(b.seed, key)%bucketShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.m[key]
	if !ok {
		if len(s.m) >= maxBuckets/bucketShards {
			s.sweep(now)
		}
		l = rate.NewLimiter(b.limit, b.burst)
		s.m[key] = l
	}
	r := l.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// sweep drops the buckets that are full again, or, when none is, half of
// them. The caller holds mu.
func (s *bucketShard) sweep(now time.Time) {
	for k, l := range s.m {
		if l.TokensAt(now) >= float64(l.Burst()) {
			delete(s.m, k)
		}
	}
	for k := range s.m {
		if len(s.m) < maxBuckets/bucketShards/2 {
			break
		}
		delete(s.m, k)
	}
}

// rateLimiter applies the configured limits to identified requests.
type rateLimiter struct {
	user, client *buckets
	limited      *prometheus.CounterVec
}

func newRateLimiter(l RateLimits, reg prometheus.Registerer) *rateLimiter {
	r := &rateLimiter{user: newBuckets(l.PerUser), client: newBuckets(l.PerClient),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "userattrs_rate_limited_total", Help: "Requests answered 429, by the limit they met (user, client).",
		}, []string{"limit"})}
	if reg != nil {
		reg.MustRegister(r.limited)
	}
	return r
}

// allow spends a token of the user's and the client's buckets, or returns
// the limit met and how long until the request may be sent again.
func (r *rateLimiter) allow(user, client string) (string, time.Duration) {
	now := time.Now()
	if r.user != nil {
		if ok, wait := r.user.take(user, now); !ok {
			r.limited.WithLabelValues("user").Inc()
			return "user", wait
		}
	}
	if r.client != nil && client != "" {
		if ok, wait := r.client.take(client, now); !ok {
			r.limited.WithLabelValues("client").Inc()
			return "client", wait
		}
	}
	return "", 0
}
