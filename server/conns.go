package server

import (
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ConnLimits bound the connections one instance holds. Each costs a file
// descriptor and memory: without a bound, idle clients alone can take every
// descriptor, after which nobody, probes included, gets an answer.
type ConnLimits struct {
	// Max is the most connections open at once. At the bound, the longest
	// idle connection is closed to make room; with none idle, the new
	// connection is answered 503 and closed at once.
	Max int
	// MaxIdle is the most keep-alive connections kept idle; a connection
	// that would go idle beyond it is closed.
	MaxIdle int
}

// DefaultConnLimits leave most of a 20,000-descriptor limit to the store,
// the logs and the issuer, and keep idle connections to a tenth of the
// connections open.
var DefaultConnLimits = ConnLimits{Max: 8192, MaxIdle: 1024}

// refusal is the whole answer to a connection beyond the bound: written
// into a fresh socket's buffer, it never blocks the accept loop.
var refusal = func() []byte {
	body := `{"errors":[{"status":"503","code":"too-many-connections","title":"Service unavailable",` +
		`"detail":"the instance holds all the connections it may; retry"}]}`
	return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/vnd.api+json\r\n" +
		"Retry-After: 1\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}()

// LimitConnections makes srv, serving ln, keep to limits: it returns the
// listener to serve, and chains srv.ConnState.
func LimitConnections(srv *http.Server, ln net.Listener, limits ConnLimits, reg prometheus.Registerer) net.Listener {
	g := &connGate{Listener: ln, limits: limits, idle: map[net.Conn]time.Time{},
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "userattrs_http_connections", Help: "HTTP connections open.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "userattrs_http_connections_refused_total", Help: "Connections answered 503 at the connection bound.",
		}),
		reaped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "userattrs_http_idle_connections_closed_total", Help: "Idle connections closed to keep within the bounds.",
		}),
	}
	if reg != nil {
		reg.MustRegister(g.open, g.refused, g.reaped)
	}
	next := srv.ConnState
	srv.ConnState = func(c net.Conn, state http.ConnState) {
		g.track(c, state)
		if next != nil {
			next(c, state)
		}
	}
	return g
}

type connGate struct {
	net.Listener
	limits ConnLimits

	mu    sync.Mutex
	count int                    // connections accepted and not yet closed
	idle  map[net.Conn]time.Time // idle keep-alive connections, and since when

	open            prometheus.Gauge
	refused, reaped prometheus.Counter
}

func (g *connGate) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		g.mu.Lock()
		if g.count >= g.limits.Max {
			g.closeOldestIdle()
		}
		admitted := g.count < g.limits.Max
		if admitted {
			g.count++
			g.open.Set(float64(g.count))
		}
		g.mu.Unlock()
		if admitted {
			return &gatedConn{Conn: c, gate: g}, nil
		}
		g.refused.Inc()
		c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		c.Write(refusal)
		c.Close()
	}
}

// closeOldestIdle closes the connection idle the longest, whose slot is
// then free at once. The caller holds mu.
func (g *connGate) closeOldestIdle() {
	var oldest net.Conn
	var since time.Time
	for c, t := range g.idle {
		if oldest == nil || t.Before(since) {
			oldest, since = c, t
		}
	}
	if oldest != nil {
		delete(g.idle, oldest)
		g.reap(oldest.(*gatedConn))
	}
}

// reap closes an idle connection to keep within the bounds; its slot is
// free at once. The caller holds mu, so not c.Close, which takes it.
func (g *connGate) reap(c *gatedConn) {
	g.reaped.Inc()
	c.release()
	c.Conn.Close()
}

func (g *connGate) track(c net.Conn, state http.ConnState) {
	gc, ok := c.(*gatedConn)
	if !ok {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch state {
	case http.StateIdle:
		if len(g.idle) >= g.limits.MaxIdle {
			g.reap(gc)
			return
		}
		g.idle[c] = time.Now()
	default:
		delete(g.idle, c)
	}
}

// gatedConn gives its slot back once, when it closes or is reaped.
type gatedConn struct {
	net.Conn
	gate *connGate
	once sync.Once
}

// release frees the slot; the caller holds the gate's mu.
func (c *gatedConn) release() {
	c.once.Do(func() {
		c.gate.count--
		c.gate.open.Set(float64(c.gate.count))
	})
}

func (c *gatedConn) Close() error {
	c.gate.mu.Lock()
	c.release()
	delete(c.gate.idle, c)
	c.gate.mu.Unlock()
	return c.Conn.Close()
}
