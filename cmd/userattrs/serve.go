package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/metrics"
	"github.com/userattrs/userattrs/server"
)

type serveConfig struct {
	addr            string
	store           storeConfig
	auth            authConfig
	maxBodyBytes    int64
	readOnly        string
	hidden          string
	reserved        string
	limits          userattrs.Limits
	shutdownTimeout time.Duration
	shutdownDelay   time.Duration
	logLevel        logLevel
	debugAddr       string
	apiVersions     string
	conns           server.ConnLimits
	rateLimits      server.RateLimits
	maxStoreOps     int
	changes         changesConfig
	trustTrace      bool
	reconcile       time.Duration
	maxErasures     int
	policyFile      string
}

func serveFlags(fs *flag.FlagSet) *serveConfig {
	c := &serveConfig{}
	fs.StringVar(&c.addr, "addr", ":8080", "address to listen on (with --dev: 127.0.0.1:8080)")
	c.store.flags(fs)
	c.auth.flags(fs)
	c.changes.flags(fs)
	fs.Int64Var(&c.maxBodyBytes, "max-body-bytes", 64<<10, "largest accepted PUT body, in bytes")
	fs.StringVar(&c.readOnly, "readonly-attributes", "", "comma-separated glob patterns of attributes clients may read but not write")
	fs.StringVar(&c.hidden, "hidden-attributes", "", "comma-separated glob patterns of attributes clients may neither read nor write")
	fs.StringVar(&c.policyFile, "attribute-policy", "", "a YAML file of attribute rules: which clients may read and write which attributes, "+
		"and what their values may be (docs/attribute-policy.md); reloaded on SIGHUP")
	fs.StringVar(&c.reserved, "reserved-attributes", strings.Join(userattrs.DefaultReserved, ","),
		"comma-separated glob patterns of attribute names no merge may set and no read returns (apps decode data and included as JSON:API members); empty allows every name")
	fs.IntVar(&c.limits.MaxAttributes, "max-attributes", userattrs.DefaultLimits.MaxAttributes, "most attributes a user may have")
	fs.IntVar(&c.limits.MaxKeyBytes, "max-key-bytes", userattrs.DefaultLimits.MaxKeyBytes, "longest attribute name, in bytes")
	fs.IntVar(&c.limits.MaxValueBytes, "max-value-bytes", userattrs.DefaultLimits.MaxValueBytes, "longest attribute value, in bytes")
	fs.IntVar(&c.limits.MaxValues, "max-values", userattrs.DefaultLimits.MaxValues, "most values of a multi-valued attribute")
	fs.IntVar(&c.limits.MaxUserBytes, "max-user-bytes", userattrs.DefaultLimits.MaxUserBytes,
		"most bytes of attribute names and values one user may keep, all attributes together")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 20*time.Second, "how long in-flight requests may take to finish on shutdown")
	fs.DurationVar(&c.shutdownDelay, "shutdown-delay", 5*time.Second,
		"on shutdown, how long readiness fails while requests are still served, before the drain (with --dev: 0)")
	fs.Var(&c.logLevel, "log-level", "least level logged: debug, info (the default), warn, error")
	fs.StringVar(&c.debugAddr, "debug-addr", "", "when set, serve Go's pprof profiles on this address (keep it on loopback)")
	fs.IntVar(&c.conns.Max, "max-connections", server.DefaultConnLimits.Max,
		"most HTTP connections open at once (kept below the file descriptor limit); beyond it idle ones are closed, then new ones get 503")
	fs.IntVar(&c.conns.MaxIdle, "max-idle-connections", server.DefaultConnLimits.MaxIdle, "most idle keep-alive connections kept open")
	fs.Float64Var(&c.rateLimits.PerUser, "rate-limit-per-user", 0,
		"requests per second one user may send, in bursts of twice that (429 beyond); 0: no limit")
	fs.Float64Var(&c.rateLimits.PerClient, "rate-limit-per-client", 0,
		"requests per second one client (azp) may send for all its users together, in bursts of twice that; 0: no limit")
	fs.Float64Var(&c.rateLimits.RefusedPerUser, "rate-limit-refused-per-user", server.DefaultRefusedPerUser,
		"requests per second of one user that may be refused as malformed or invalid (400, 413, 415, 422), in bursts of twice that; "+
			"past it the user's requests are 429 before their bodies are read; 0: no limit")
	fs.IntVar(&c.maxStoreOps, "max-store-operations", 256,
		"store operations one instance runs at once; beyond it requests get 503 with Retry-After at once instead of queueing")
	fs.DurationVar(&c.reconcile, "reconcile-interval", 0,
		"on SQLite and PostgreSQL: this often, erase the users Keycloak (--keycloak-url, --keycloak-realm, --keycloak-client-id) "+
			"no longer knows, from one instance at a time (0: never; userattrs reconcile runs it once)")
	fs.IntVar(&c.maxErasures, "reconcile-max-erasures", 1000,
		"a reconciliation that finds more unknown users than this erases none, and fails (0: no bound)")
	fs.BoolVar(&c.trustTrace, "trust-incoming-trace", false,
		"with tracing on (OTEL_EXPORTER_OTLP_ENDPOINT): make a request's traceparent the parent of its span; off, it is only linked, "+
			"so that clients cannot join or force-sample the service's traces")
	fs.StringVar(&c.apiVersions, "api-versions", strings.Join(server.DefaultVersions, ","),
		"comma-separated versions of the user API that serve the attributes routes")
	return c
}

// descriptorHeadroom is what the connection bound leaves of the file
// descriptor limit to the store, the issuer, the logs and the runtime.
const descriptorHeadroom = 512

// connLimits are the connection bounds, lowered below the process's file
// descriptor limit where they would exceed it.
func (c *serveConfig) connLimits(logger *slog.Logger) (server.ConnLimits, error) {
	l := c.conns
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < uint64(l.Max+descriptorHeadroom) {
		if rl.Cur < 2*descriptorHeadroom {
			return l, fmt.Errorf("the file descriptor limit (%d) leaves no room for connections: raise it (ulimit -n) to at least %d",
				rl.Cur, 2*descriptorHeadroom)
		}
		l.Max = int(rl.Cur) - descriptorHeadroom
		logger.Warn("--max-connections lowered below the file descriptor limit", "max_connections", l.Max, "nofile", rl.Cur)
	}
	l.MaxIdle = min(l.MaxIdle, l.Max)
	return l, nil
}

func (c *serveConfig) validate() error {
	if c.maxBodyBytes < 2 {
		return errors.New("--max-body-bytes must be at least 2")
	}
	l := c.limits
	if l.MaxAttributes < 1 || l.MaxKeyBytes < 1 || l.MaxValueBytes < 1 || l.MaxValues < 1 || l.MaxUserBytes < 1 {
		return errors.New("--max-attributes, --max-key-bytes, --max-value-bytes, --max-values and --max-user-bytes must be positive")
	}
	if c.store.readCacheMaxBytes < 1 {
		return errors.New("--read-cache-max-bytes must be positive")
	}
	if c.store.timeout <= 0 || c.shutdownTimeout <= 0 || c.auth.introspectionCacheTTL < 0 {
		return errors.New("--store-timeout and --shutdown-timeout must be positive, --introspection-cache-ttl not negative")
	}
	if c.rateLimits.PerUser < 0 || c.rateLimits.PerClient < 0 || c.rateLimits.RefusedPerUser < 0 || c.maxStoreOps < 1 {
		return errors.New("--rate-limit-per-user, --rate-limit-per-client and --rate-limit-refused-per-user must not be negative, --max-store-operations must be positive")
	}
	if c.conns.Max < 1 || c.conns.MaxIdle < 0 {
		return errors.New("--max-connections must be positive, --max-idle-connections not negative")
	}
	if c.shutdownDelay < 0 {
		return errors.New("--shutdown-delay must not be negative")
	}
	if c.reconcile < 0 || c.maxErasures < 0 {
		return errors.New("--reconcile-interval and --reconcile-max-erasures must not be negative")
	}
	if c.auth.oidcIssuer != "" {
		if u, err := url.Parse(c.auth.oidcIssuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return errors.New("--oidc-issuer must be the issuer's http(s) URL, e.g. https://sso.example.com/realms/main")
		}
	}
	versions := commaList(c.apiVersions)
	if len(versions) == 0 {
		return errors.New("--api-versions names no version")
	}
	for _, v := range versions {
		if !datedVersion.MatchString(v) {
			return fmt.Errorf("--api-versions: %q is not a version of the user API such as 2025-1", v)
		}
	}
	return nil
}

// drainDelay is --shutdown-delay, which development mode, with no load
// balancer to tell, leaves out unless it is set.
func (c *serveConfig) drainDelay(set map[string]bool) time.Duration {
	if c.auth.dev && !set["shutdown-delay"] {
		return 0
	}
	return c.shutdownDelay
}

// datedVersion is the shape of the user API's versions: a year and a
// release number.
var datedVersion = regexp.MustCompile(`^[0-9]{4}-[0-9]{1,2}$`)

// serve runs the service until ctx is done, then shuts down gracefully:
// in-flight requests finish, new ones are refused.
func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("userattrs serve", flag.ContinueOnError)
	cfg := serveFlags(fs)
	set, err := parseFlags(fs, args, getenv, stdout)
	if err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	if cfg.auth.dev && !set["addr"] {
		cfg.addr = "127.0.0.1:8080"
	}
	logOut := newBufferedLog(stderr)
	defer logOut.Close()
	logger := slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: cfg.logLevel.Level}))

	if err := cfg.changes.check(); err != nil {
		return usageError{err}
	}
	flushTraces, err := startTracing(ctx, getenv)
	if err != nil {
		return usageError{err}
	}
	var tracingConfig *server.Tracing
	if flushTraces != nil {
		tracingConfig = &server.Tracing{Provider: otel.GetTracerProvider(), TrustIncoming: cfg.trustTrace}
		defer func() {
			flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			flushTraces(flushCtx)
		}()
	}
	reg := prometheus.NewRegistry()
	verifier, readiness, err := newVerifier(ctx, &cfg.auth, cfg.store.dataDir, logger, newTokenMetrics(reg))
	if err != nil {
		return err
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "userattrs_build_info",
		Help: "Always 1: the version of the running binary, and the Go it was built with."}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(version(), runtime.Version()).Set(1)
	reg.MustRegister(buildInfo)
	cfg.store.events = cfg.changes.eventsOn()
	opened, kind, err := cfg.store.open(ctx, logger)
	if err != nil {
		return err
	}
	defer opened.Close()
	// The one store value every consumer takes: measured, and with its
	// history, outbox and linked identities found through it (As).
	st := metrics.InstrumentStore(opened, kind.Name, reg)
	changesCtx, stopChanges := context.WithCancel(context.WithoutCancel(ctx))
	running, err := cfg.changes.start(changesCtx, st, kind.Name, logger, reg)
	if err != nil {
		stopChanges()
		return err
	}
	// The dispatcher stops after the last request, before the store closes.
	defer running.wait()
	defer stopChanges()
	caps := st.Capabilities()
	if !caps.Durable {
		logger.Warn("the " + kind.Name + " store keeps attributes in memory only: they are lost when the process ends; for development and tests")
	}
	links, err := linkedIdentities(&cfg.auth, st)
	if err != nil {
		return err
	}
	// Attributes the backend owns (Keycloak's profile fields) are neither
	// shown nor written.
	attrPolicy := &attributePolicy{path: cfg.policyFile, limits: cfg.limits, lists: userattrs.PolicyConfig{
		Hidden: append(commaList(cfg.hidden), caps.OwnedAttributes...), ReadOnly: commaList(cfg.readOnly), Reserved: commaList(cfg.reserved)}}
	policy, err := attrPolicy.load()
	if err != nil {
		return usageError{err}
	}
	readCache := userattrs.ReadCacheConfig{Enabled: cfg.store.readCache, TTL: time.Duration(cfg.store.readCacheTTL),
		MaxBytes: cfg.store.readCacheMaxBytes}
	svcConfig := userattrs.ServiceConfig{
		Limits: cfg.limits, Policy: policy, StoreTimeout: cfg.store.timeout, ReadCache: readCache, MaxStoreOperations: cfg.maxStoreOps,
	}
	if running.dispatcher != nil {
		svcConfig.Admit = running.dispatcher.Admit
		readiness = append(readiness, server.ReadinessCheck{Name: "events outbox", Check: running.dispatcher.Ready})
	}
	svc := userattrs.NewService(st, svcConfig)
	registerReadCache(reg, svc)
	policyMetrics := newPolicyMetrics(reg)
	policyMetrics.inForce(policy)
	if cfg.policyFile != "" {
		go attrPolicy.reloadOnHangup(changesCtx, svc, policyMetrics, logger)
	}
	if cfg.reconcile > 0 {
		if _, ok := userattrs.As[userattrs.Inventory](st); !ok {
			return usageError{fmt.Errorf("--reconcile-interval: the %s store keeps nothing the identity provider does not: it has nothing to reconcile", kind.Name)}
		}
		dir, err := directoryFlags(fs, cfg.store.timeout)
		if err != nil {
			return err
		}
		defer dir.Close()
		r := newReconciler(svc, st, dir, cfg.reconcile, cfg.maxErasures, logger, reg)
		go r.run(changesCtx)
	}
	if dir := cfg.store.diskDir(); dir != "" {
		registerDisk(reg, dir)
	}
	// Say at start what readiness would say: a store that cannot serve as
	// configured (Keycloak without the extension, say) is told at once.
	go func() {
		if err := svc.Ping(ctx); err != nil && ctx.Err() == nil {
			logger.Warn("the store cannot serve yet; readiness fails until it can", "error", err.Error())
		}
	}()
	var draining atomic.Bool
	readiness = append([]server.ReadinessCheck{
		{Name: "shutdown", Check: func(context.Context) error {
			if draining.Load() {
				return errors.New("shutting down")
			}
			return nil
		}},
		{Name: "store", Check: svc.Ping},
	}, readiness...)

	srv := server.NewHTTPServer(server.NewServer(server.Config{
		Service: svc, Verifier: verifier, Logger: logger, Metrics: reg,
		MaxBodyBytes: cfg.maxBodyBytes, Readiness: readiness, Versions: commaList(cfg.apiVersions),
		LinkedIdentityRules: server.LinkedIdentityRules(cfg.auth.requireLinked), LinkedIdentities: links,
		CheckTimeout: cfg.store.timeout, RateLimits: cfg.rateLimits, Outbox: running.outbox, Tracing: tracingConfig,
	}), slog.NewLogLogger(logger.Handler(), slog.LevelWarn))
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	conns, err := cfg.connLimits(logger)
	if err != nil {
		ln.Close()
		return err
	}
	ln = server.LimitConnections(srv, ln, conns, reg)
	logger.Info("listening", "addr", ln.Addr().String(), "store", kind.Name, "version", version(), "api_versions", cfg.apiVersions)
	if cfg.debugAddr != "" {
		if err := serveDebug(ctx, cfg.debugAddr, logger); err != nil {
			return err
		}
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	// Readiness fails first while the listener still serves, so that load
	// balancers stop sending before connections are refused.
	draining.Store(true)
	if delay := cfg.drainDelay(set); delay > 0 {
		logger.Info("shutting down: not ready, still serving", "delay", delay.String())
		time.Sleep(delay)
	}
	logger.Info("shutting down", "timeout", cfg.shutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// serveDebug serves the pprof profiles on their own listener, apart from the
// API, until ctx is done.
func serveDebug(ctx context.Context, addr string, logger *slog.Logger) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--debug-addr: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	logger.Info("serving profiles", "addr", ln.Addr().String())
	return nil
}
