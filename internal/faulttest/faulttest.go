// Package faulttest puts a real fault-injecting TCP proxy, Toxiproxy, between
// the service and a dependency. The proxy runs as its own process (the
// toxiproxy-server that go.mod declares as a tool, built by the go command),
// so that the goroutines the tests count are the service's alone.
package faulttest

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"

	"github.com/userattrs/userattrs/internal/testutil"
)

// Fault is one way a dependency's network misbehaves.
type Fault struct {
	Name string
	// Breaks says whether the dependency is out while the fault lasts:
	// requests that need it get 503 and readiness fails. Faults that only
	// slow or degrade it need answers within the bound, of either kind.
	Breaks bool
	toxic  string
	stream string
	attrs  toxiproxy.Attributes
}

// Faults are the faults every dependency is tested with: latency far
// beyond the store timeout, a bandwidth trickle, connections reset, a black
// hole that drops everything without a reset, and a close that lingers.
var Faults = []Fault{
	{Name: "latency 10s", Breaks: true, toxic: "latency", stream: "downstream", attrs: toxiproxy.Attributes{"latency": 10000}},
	{Name: "trickle 1 KB/s", toxic: "bandwidth", stream: "downstream", attrs: toxiproxy.Attributes{"rate": 1}},
	{Name: "connections reset", Breaks: true, toxic: "reset_peer", stream: "upstream", attrs: toxiproxy.Attributes{"timeout": 0}},
	{Name: "black hole", Breaks: true, toxic: "timeout", stream: "upstream", attrs: toxiproxy.Attributes{"timeout": 0}},
	{Name: "slow close 10s", toxic: "slow_close", stream: "downstream", attrs: toxiproxy.Attributes{"delay": 10000}},
}

// Proxy is one proxied dependency.
type Proxy struct {
	t     testing.TB
	proxy *toxiproxy.Proxy
	// Addr is where the service connects instead of the dependency.
	Addr string
}

var (
	client     *toxiproxy.Client
	server     *exec.Cmd
	serverErr  error
	serverOnce sync.Once
)

// Cleanup stops the proxy server, if one was started: call it from
// TestMain.
func Cleanup() {
	if server != nil {
		server.Process.Kill()
		server.Wait()
	}
}

// New starts a proxy in front of upstream (host:port) and returns it; it is
// removed when the test ends.
func New(t testing.TB, name, upstream string) *Proxy {
	t.Helper()
	serverOnce.Do(func() { client, serverErr = startServer() })
	if serverErr != nil {
		t.Fatalf("faulttest: %v", serverErr)
	}
	port, err := testutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p, err := client.CreateProxy(name+"-"+fmt.Sprint(port), fmt.Sprintf("127.0.0.1:%d", port), upstream)
	if err != nil {
		t.Fatalf("faulttest: create proxy: %v", err)
	}
	t.Cleanup(func() { p.Delete() })
	return &Proxy{t: t, proxy: p, Addr: p.Listen}
}

// Inject starts f; Heal ends it.
func (p *Proxy) Inject(f Fault) {
	p.t.Helper()
	if _, err := p.proxy.AddToxic("fault", f.toxic, f.stream, 1, f.attrs); err != nil {
		p.t.Fatalf("faulttest: inject %s: %v", f.Name, err)
	}
}

// Heal ends the fault.
func (p *Proxy) Heal() {
	p.t.Helper()
	if err := p.proxy.RemoveToxic("fault"); err != nil {
		p.t.Fatalf("faulttest: heal: %v", err)
	}
}

// startServer builds toxiproxy-server and runs it on
// a free loopback port until the test binary exits (it exits with its
// parent: Pdeathsig).
func startServer() (*toxiproxy.Client, error) {
	bin, err := binary()
	if err != nil {
		return nil, err
	}
	port, err := testutil.FreePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-host", "127.0.0.1", "-port", fmt.Sprint(port))
	// Its log (a line per connection) goes to /dev/null: a goroutine
	// draining a pipe would be one the leak checks count.
	cmd.SysProcAttr = parentDeathSignal()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	server = cmd
	c := toxiproxy.NewClient(fmt.Sprintf("127.0.0.1:%d", port))
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.Version(); err == nil {
			return c, nil
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			return nil, fmt.Errorf("toxiproxy-server did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// toxiproxyTool is the toxiproxy-server that go.mod declares as a tool.
const toxiproxyTool = "github.com/Shopify/toxiproxy/v2/cmd/server"

// binary returns the path of toxiproxy-server as go.mod and go.sum pin it.
// `go tool -n` builds it into Go's build cache, which keys the binary by
// its inputs and checks go.sum on every call: no cache of this project's
// own can hand back a binary that a new machine could not build.
func binary() (string, error) {
	root, err := testutil.RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "tool", "-n", toxiproxyTool)
	cmd.Dir = root
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("build toxiproxy-server: %w\n%s", err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// Retarget points the proxy at another upstream, for a dependency that
// needs the proxy's address before it starts.
func (p *Proxy) Retarget(upstream string) {
	p.t.Helper()
	p.proxy.Upstream = upstream
	if err := p.proxy.Save(); err != nil {
		p.t.Fatalf("faulttest: retarget: %v", err)
	}
}
