package server

import (
	"hash/maphash"
	"math"
	"net/http"
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
	// RefusedPerUser bounds the requests of one user that the service
	// refuses as malformed or invalid (400, 413, 415, 422): past its
	// bucket, the user's requests are 429 before their bodies are read
	// or checked, so that a client sending bad bodies in a loop costs
	// little of what other users need. Zero turns it off.
	RefusedPerUser float64
}

// DefaultRefusedPerUser is RefusedPerUser unless configured: no app sends
// ten bad bodies a second for long.
const DefaultRefusedPerUser = 10

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
	return b.with(key, now, true, func(l *rate.Limiter) (bool, time.Duration) {
		r := l.ReserveN(now, 1)
		if d := r.DelayFrom(now); d > 0 {
			r.CancelAt(now)
			return false, d
		}
		return true, 0
	})
}

// has reports whether key's bucket holds a token, or how long until one is
// due, and spends none.
func (b *buckets) has(key string, now time.Time) (bool, time.Duration) {
	return b.with(key, now, false, func(l *rate.Limiter) (bool, time.Duration) {
		if tokens := l.TokensAt(now); tokens < 1 {
			return false, time.Duration((1 - tokens) / float64(b.limit) * float64(time.Second))
		}
		return true, 0
	})
}

// spend takes a token of key's bucket, into debt if it has none.
func (b *buckets) spend(key string, now time.Time) {
	b.with(key, now, true, func(l *rate.Limiter) (bool, time.Duration) {
		l.ReserveN(now, 1)
		return true, 0
	})
}

// with runs f on key's bucket under its shard's lock; a key without a
// bucket has a full one, made when create is set.
func (b *buckets) with(key string, now time.Time, create bool, f func(*rate.Limiter) (bool, time.Duration)) (bool, time.Duration) {
	s := &b.shards[maphash.String(b.seed, key)%bucketShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.m[key]
	if !ok {
		if !create {
			return true, 0
		}
		if len(s.m) >= maxBuckets/bucketShards {
			s.sweep(now)
		}
		l = rate.NewLimiter(b.limit, b.burst)
		s.m[key] = l
	}
	return f(l)
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
	user, client, refused *buckets
	limited               *prometheus.CounterVec
}

func newRateLimiter(l RateLimits, reg prometheus.Registerer) *rateLimiter {
	r := &rateLimiter{user: newBuckets(l.PerUser), client: newBuckets(l.PerClient), refused: newBuckets(l.RefusedPerUser),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "userattrs_rate_limited_total", Help: "Requests answered 429, by the limit they met (user, client, refused).",
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
	if r.refused != nil {
		if ok, wait := r.refused.has(user, now); !ok {
			r.limited.WithLabelValues("refused").Inc()
			return limitRefused, wait
		}
	}
	return "", 0
}

// limitRefused is the limit of a user's refused requests.
const limitRefused = "user's refused requests"

// answered notes a request of user's that got status: one refused as
// malformed or invalid spends a token of the user's refusal bucket.
func (r *rateLimiter) answered(user string, status int) {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
		if r.refused != nil {
			r.refused.spend(user, time.Now())
		}
	}
}
