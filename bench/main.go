// Command bench measures, in one run on this machine, what a call of the
// attributes API costs: the speed limit of a Go HTTP server (a bare handler
// on the same routes), userattrs on each store with real verified tokens,
// and what a client would call instead (Keycloak's Account API, and a direct
// Admin API read). It prints one table and writes the results as JSON and
// as a PNG chart into the results folder.
//
//	go run ./bench [-duration 10s] [-warmup 3s] [-conns 1,32] [-stores sqlite,postgres,keycloak]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/userattrs/userattrs/internal/testutil"
)

// Result is one measured scenario at one connection count.
type Result struct {
	Target string `json:"target"` // what was measured, e.g. "userattrs sqlite"
	Method string `json:"method"`
	Scenario
	Conns      int           `json:"connections"`
	Requests   uint64        `json:"requests"`
	RPS        float64       `json:"requests_per_second"` // successful requests per second
	P50        time.Duration `json:"p50_ns"`
	P99        time.Duration `json:"p99_ns"`
	Errors     uint64        `json:"errors"`
	RatioLimit float64       `json:"ratio_to_limit,omitempty"`
	// RatioTrue relates a SQLite row to its true limit: a PUT to the
	// durable write's, a GET of the large store to the verify-and-read's.
	RatioTrue  float64 `json:"ratio_to_true_limit,omitempty"`
	PeakRSSMiB float64 `json:"peak_rss_mib,omitempty"` // of the measured userattrs process
}

// Scenario is whom a measurement's requests are for.
type Scenario struct {
	Users      int    `json:"users"`
	Attributes int    `json:"attributes_per_user"`
	Pattern    string `json:"pattern"` // which user each request is for, and with which token
}

// The access patterns.
const (
	roundRobin  = "round robin, tokens reused"
	firstSeen   = "uniform random, first-seen tokens"
	reusedFour  = "uniform random, each token 4 times"
	limitBodies = "fixed body"
)

// label names a scenario in the table and the chart.
func (s Scenario) label() string {
	if s.Users == 0 { // the limit's
		if s.Attributes == 0 {
			return s.Pattern
		}
		return fmt.Sprintf("body of a user of %d attrs", s.Attributes)
	}
	users := strconv.Itoa(s.Users)
	switch {
	case s.Users%1000000 == 0:
		users = strconv.Itoa(s.Users/1000000) + "M"
	case s.Users%1000 == 0:
		users = strconv.Itoa(s.Users/1000) + "k"
	}
	return fmt.Sprintf("%s users x %d attrs, %s", users, s.Attributes, s.Pattern)
}

// Report is what a run writes.
type Report struct {
	Date     time.Time `json:"date"`
	Cores    int       `json:"cores"`
	Duration string    `json:"duration"`
	Warmup   string    `json:"warmup"`
	Notes    []string  `json:"notes,omitempty"`
	Results  []Result  `json:"results"`
}

type config struct {
	duration, warmup time.Duration
	conns            []int
	users, kcUsers   int
	million          int
	largeOnly        bool
	profiles         bool
	pgPools          []int
	stores           map[string]bool
	out              string
}

func main() {
	var c config
	var conns, stores, pools string
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "how long each measurement runs")
	flag.DurationVar(&c.warmup, "warmup", 3*time.Second, "warm-up before each target, not measured")
	flag.StringVar(&conns, "conns", "1,32", "connection counts")
	flag.IntVar(&c.users, "users", 1000, "users (one token each) for the SQL stores")
	flag.IntVar(&c.kcUsers, "keycloak-users", 100, "users (one token each) created in Keycloak")
	flag.IntVar(&c.million, "large-store-users", 1000000, "users seeded into the large SQLite store (0: not measured)")
	flag.BoolVar(&c.profiles, "profiles", false, "write a CPU profile of userattrs for each row at the highest connection count")
	flag.BoolVar(&c.largeOnly, "large-store-only", false, "measure only the large SQLite store (to profile it)")
	flag.StringVar(&pools, "postgres-pools", "4,10", "PostgreSQL connection pool sizes to measure")
	flag.StringVar(&stores, "stores", "sqlite,postgres,keycloak", "stores to measure, where available")
	flag.StringVar(&c.out, "out", "results", "folder for the JSON and PNG results")
	flag.Parse()
	c.conns = counts("conns", conns)
	c.pgPools = counts("postgres-pools", pools)
	c.stores = map[string]bool{}
	for _, s := range strings.Split(stores, ",") {
		c.stores[strings.TrimSpace(s)] = true
	}
	if err := run(c); err != nil {
		fatal(err)
	}
}

// counts parses a flag's comma-separated positive numbers.
func counts(name, list string) []int {
	var ns []int
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fatal(fmt.Errorf("-%s: %q", name, s))
		}
		ns = append(ns, n)
	}
	return ns
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// bench holds a run's state.
type bench struct {
	config
	tmp     string
	bins    map[string]string
	report  Report
	cleanup []func()
}

func run(c config) error {
	tmp, err := os.MkdirTemp("", "userattrs-bench-")
	if err != nil {
		return err
	}
	b := &bench{config: c, tmp: tmp, bins: map[string]string{}}
	defer func() {
		for i := len(b.cleanup) - 1; i >= 0; i-- {
			b.cleanup[i]()
		}
		os.RemoveAll(tmp)
	}()
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	b.report = Report{Date: time.Now().UTC(), Cores: runtime.NumCPU(), Duration: c.duration.String(),
		Warmup: c.warmup.String()}

	for name, pkg := range map[string]string{"userattrs": "./cmd/userattrs", "bare": "./bench/bare"} {
		b.bins[name] = filepath.Join(tmp, name)
		if out, err := exec.Command("go", "build", "-o", b.bins[name], pkg).CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %w\n%s", pkg, err, out)
		}
	}

	if c.largeOnly {
		c.stores = map[string]bool{}
		if err := b.measureMillion(); err != nil {
			return err
		}
	} else if err := b.measureLimit(); err != nil {
		return err
	}
	if c.stores["sqlite"] {
		if err := b.measureSQL("sqlite", "sqlite:"+filepath.Join(tmp, "bench.db")); err != nil {
			return err
		}
		if err := b.measurePUT("history-off", "userattrs sqlite, history off", nil, "--history", "off"); err != nil {
			return err
		}
		if err := b.measureEvents(); err != nil {
			return err
		}
	}
	if c.stores["sqlite"] && c.million > 0 {
		if err := b.measureMillion(); err != nil {
			return err
		}
	}
	if c.stores["postgres"] {
		if err := b.measurePostgres(); err != nil {
			b.note("postgres: not measured: %v", err)
		}
	}
	if c.stores["keycloak"] {
		if err := b.measureKeycloak(); err != nil {
			b.note("keycloak: not measured: %v", err)
		}
	}
	b.ratios()
	printTable(os.Stdout, b.report)
	return b.write()
}

func (b *bench) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	logf("%s", msg)
	b.report.Notes = append(b.report.Notes, msg)
}

// server is a process under measurement.
type server struct {
	cmd   *exec.Cmd
	url   string
	debug string // where it serves pprof profiles; "" for none
}

// start runs a server binary with args on a free port and waits until it
// answers its liveness route.
func (b *bench) start(bin string, env []string, args ...string) (*server, error) {
	port, err := testutil.FreePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args = append(args, "--addr", addr)
	var debug string
	if bin == b.bins["userattrs"] {
		debugPort, err := testutil.FreePort()
		if err != nil {
			return nil, err
		}
		debug = fmt.Sprintf("127.0.0.1:%d", debugPort)
		args = append(args, "--debug-addr", debug)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, url: "http://" + addr, debug: debug}
	b.cleanup = append(b.cleanup, func() { s.stop() })
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get(s.url + "/health/liveness")
		if err == nil {
			resp.Body.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s did not start", filepath.Base(bin))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *server) stop() {
	if s.cmd.ProcessState == nil {
		s.cmd.Process.Signal(syscall.SIGTERM)
		s.cmd.Wait()
	}
}

// rssMiB reads the resident memory of a process.
func rssMiB(pid int) float64 { return procStatus(pid)["VmRSS"] / 1024 }

// procStatus reads the numbers of a process's /proc status (memory in
// KiB) by name; none when the process is gone.
func procStatus(pid int) map[string]float64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	fields := map[string]float64{}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			fields[strings.TrimSuffix(f[0], ":")], _ = strconv.ParseFloat(f[1], 64)
		}
	}
	return fields
}

// attack sends targets round robin over conns connections as fast as the
// server answers, for d (or, once, until each was sent once), and returns
// vegeta's metrics and the peak RSS of the process pid (0: not watched).
func attack(targets []vegeta.Target, conns int, d time.Duration, pid int, once bool) (vegeta.Metrics, float64) {
	var next atomic.Uint64
	targeter := func(t *vegeta.Target) error {
		i := next.Add(1) - 1
		if once && i >= uint64(len(targets)) {
			return vegeta.ErrNoTargets
		}
		*t = targets[i%uint64(len(targets))]
		return nil
	}
	attacker := vegeta.NewAttacker(
		vegeta.Workers(uint64(conns)), vegeta.MaxWorkers(uint64(conns)),
		vegeta.Connections(conns), vegeta.MaxConnections(conns),
		vegeta.KeepAlive(true), vegeta.Timeout(10*time.Second))
	var peak atomic.Uint64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if pid > 0 {
		go func() {
			for ctx.Err() == nil {
				if rss := uint64(rssMiB(pid) * 1024); rss > peak.Load() {
					peak.Store(rss)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	var m vegeta.Metrics
	for res := range attacker.Attack(targeter, vegeta.Rate{Freq: 0}, d, "") {
		if once && res.Error == vegeta.ErrNoTargets.Error() {
			continue // a worker that found every target sent: no request
		}
		m.Add(res)
	}
	m.Close()
	return m, float64(peak.Load()) / 1024
}

// measure warms a target up, then measures it at every connection count.
// s is the userattrs process measured, nil for others.
func (b *bench) measure(target, method string, sc Scenario, targets []vegeta.Target, s *server) {
	logf("%s %s (%s): warm-up", target, method, sc.label())
	attack(targets, b.conns[len(b.conns)-1], b.warmup, 0, false)
	for _, conns := range b.conns {
		b.measureOnce(target, method, sc, targets, s, conns, false)
	}
}

// measureOnce measures targets at conns connections, without a warm-up;
// once: each target is sent at most once, for the patterns whose tokens
// must be first seen. With -profiles, a CPU profile of s is taken at the
// highest connection count.
func (b *bench) measureOnce(target, method string, sc Scenario, targets []vegeta.Target, s *server, conns int, once bool) Result {
	pid := 0
	var profiled <-chan struct{}
	if s != nil {
		pid = s.cmd.Process.Pid
		if b.profiles && conns == b.conns[len(b.conns)-1] {
			name := strings.NewReplacer(" ", "-", ",", "", "/", "").Replace(fmt.Sprintf("%s-%s-%d-%d-%s", target, method, sc.Users, sc.Attributes, sc.Pattern))
			profiled = b.profile(s, fmt.Sprintf("profile?seconds=%d", max(1, int(b.duration.Seconds())-1)), name)
		}
	}
	m, peak := attack(targets, conns, b.duration, pid, once)
	if profiled != nil {
		<-profiled
	}
	success := uint64(float64(m.Requests)*m.Success + 0.5)
	r := Result{Target: target, Method: method, Scenario: sc, Conns: conns, Requests: m.Requests, RPS: m.Throughput,
		P50: m.Latencies.P50, P99: m.Latencies.P99, Errors: m.Requests - success, PeakRSSMiB: peak}
	if len(m.Errors) > 0 {
		logf("%s %s: errors, e.g. %s", target, method, m.Errors[0])
	}
	if once && m.Requests >= uint64(len(targets)) {
		b.note("%s %s (%s): all %d prepared requests sent before %s ended", target, method, sc.label(), len(targets), b.duration)
	}
	logf("%s %s (%s), %d conns: %.0f req/s, p50 %s, p99 %s, %d errors", target, method, sc.label(), conns, r.RPS, r.P50, r.P99, r.Errors)
	b.report.Results = append(b.report.Results, r)
	return r
}

// profile fetches a pprof profile of s into the results folder, in the
// background; the channel closes when it is written.
func (b *bench) profile(s *server, query, name string) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		path := filepath.Join(b.out, "bench-"+b.report.Date.Format("20060102-150405")+"-"+name+".pprof")
		resp, err := http.Get("http://" + s.debug + "/debug/pprof/" + query)
		if err == nil {
			defer resp.Body.Close()
			var data []byte
			if data, err = io.ReadAll(resp.Body); err == nil {
				err = os.WriteFile(path, data, 0o644)
			}
		}
		if err != nil {
			logf("profile %s: %v", name, err)
			return
		}
		logf("wrote %s", path)
	}()
	return done
}

// ratios relates every result to the bare handler's at the same method and
// connection count, and for a GET, the same body: that of a user of as many
// attributes where the limit was measured for that size.
func (b *bench) ratios() {
	limit := map[string]float64{}
	key := func(r Result, attrs int) string { return fmt.Sprint(r.Method, r.Conns, attrs) }
	for _, r := range b.report.Results {
		if r.Target == limitTarget {
			limit[key(r, r.Attributes)] = r.RPS
		}
	}
	for i, r := range b.report.Results {
		l, ok := limit[key(r, r.Attributes)]
		if !ok {
			l = limit[key(r, 0)]
		}
		if l > 0 {
			b.report.Results[i].RatioLimit = r.RPS / l
		}
	}
	trueLimit := map[string]float64{}
	for _, r := range b.report.Results {
		switch r.Target {
		case durableTarget, verifyReadTarget:
			trueLimit[fmt.Sprint(r.Method, r.Conns, r.Users)] = r.RPS
		}
	}
	for i, r := range b.report.Results {
		if !strings.HasPrefix(r.Target, "userattrs sqlite") {
			continue
		}
		var l float64
		switch {
		case r.Method == "PUT":
			l = trueLimit[fmt.Sprint("PUT", r.Conns, 0)]
		case r.Users == b.million:
			l = trueLimit[fmt.Sprint("GET", r.Conns, b.million)]
		}
		if l > 0 {
			b.report.Results[i].RatioTrue = r.RPS / l
		}
	}
}

func (b *bench) write() error {
	if err := os.MkdirAll(b.out, 0o755); err != nil {
		return err
	}
	stamp := b.report.Date.Format("20060102-150405")
	data, err := json.MarshalIndent(b.report, "", "  ")
	if err != nil {
		return err
	}
	jsonPath := filepath.Join(b.out, "bench-"+stamp+".json")
	if err := os.WriteFile(jsonPath, data, 0o644); err != nil {
		return err
	}
	pngPath := filepath.Join(b.out, "bench-"+stamp+".png")
	if err := chart(b.report, pngPath); err != nil {
		return err
	}
	logf("wrote %s and %s", jsonPath, pngPath)
	return nil
}

func printTable(w io.Writer, r Report) {
	fmt.Fprintf(w, "\n%d cores, %s, %s per measurement after %s warm-up\n\n", r.Cores, r.Date.Format(time.RFC3339), r.Duration, r.Warmup)
	fmt.Fprintf(w, "| %-32s | %-6s | %-56s | %5s | %10s | %9s | %9s | %6s | %8s | %8s | %8s |\n", "target", "method", "scenario", "conns", "req/s", "p50", "p99", "errors", "vs limit", "vs true", "RSS MiB")
	fmt.Fprintf(w, "|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 34), strings.Repeat("-", 8), strings.Repeat("-", 58), strings.Repeat("-", 7),
		strings.Repeat("-", 12), strings.Repeat("-", 11), strings.Repeat("-", 11), strings.Repeat("-", 8), strings.Repeat("-", 10), strings.Repeat("-", 10), strings.Repeat("-", 10))
	for _, x := range r.Results {
		ratio, trueRatio, rss := "", "", ""
		if x.RatioLimit > 0 {
			ratio = fmt.Sprintf("%.2f", x.RatioLimit)
		}
		if x.RatioTrue > 0 {
			trueRatio = fmt.Sprintf("%.2f", x.RatioTrue)
		}
		if x.PeakRSSMiB > 0 {
			rss = fmt.Sprintf("%.1f", x.PeakRSSMiB)
		}
		fmt.Fprintf(w, "| %-32s | %-6s | %-56s | %5d | %10.0f | %9s | %9s | %6d | %8s | %8s | %8s |\n", x.Target, x.Method, x.Scenario.label(), x.Conns, x.RPS,
			x.P50.Round(time.Microsecond), x.P99.Round(time.Microsecond), x.Errors, ratio, trueRatio, rss)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "\nnote: %s", n)
	}
	fmt.Fprintln(w)
}
