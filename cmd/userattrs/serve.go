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
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/auth"
	"github.com/userattrs/userattrs/metrics"
	"github.com/userattrs/userattrs/server"
	"github.com/userattrs/userattrs/store/postgres"
	"github.com/userattrs/userattrs/store/sqlite"
)

type serveConfig struct {
	addr            string
	store           string
	oidcIssuer      string
	oidcAudience    string
	maxBodyBytes    int64
	readOnly        string
	hidden          string
	dev             bool
	dataDir         string
	limits          userattrs.Limits
	postgresConns   int
	autoMigrate     bool
	storeTimeout    time.Duration
	shutdownTimeout time.Duration
	logLevel        slog.Level
}

func serveFlags(fs *flag.FlagSet) *serveConfig {
	c := &serveConfig{}
	fs.StringVar(&c.addr, "addr", ":8080", "address to listen on (with --dev: 127.0.0.1:8080)")
	storeFlags(fs, &c.store, &c.postgresConns)
	fs.BoolVar(&c.autoMigrate, "auto-migrate", true, "apply pending schema migrations at start (else: userattrs migrate)")
	fs.StringVar(&c.oidcIssuer, "oidc-issuer", "", "issuer URL of the OIDC provider whose access tokens are accepted")
	fs.StringVar(&c.oidcAudience, "oidc-audience", "", "when set, tokens must name this audience in aud")
	fs.Int64Var(&c.maxBodyBytes, "max-body-bytes", 64<<10, "largest accepted PUT body, in bytes")
	fs.StringVar(&c.readOnly, "readonly-attributes", "", "comma-separated glob patterns of attributes clients may read but not write")
	fs.StringVar(&c.hidden, "hidden-attributes", "", "comma-separated glob patterns of attributes clients may neither read nor write")
	fs.BoolVar(&c.dev, "dev", false, "development mode: trust tokens of the local development key (never in production)")
	fs.StringVar(&c.dataDir, "data-dir", "data", "directory of the development key")
	fs.IntVar(&c.limits.MaxAttributes, "max-attributes", userattrs.DefaultLimits.MaxAttributes, "most attributes a user may have")
	fs.IntVar(&c.limits.MaxKeyBytes, "max-key-bytes", userattrs.DefaultLimits.MaxKeyBytes, "longest attribute name, in bytes")
	fs.IntVar(&c.limits.MaxValueBytes, "max-value-bytes", userattrs.DefaultLimits.MaxValueBytes, "longest attribute value, in bytes")
	fs.IntVar(&c.limits.MaxValues, "max-values", userattrs.DefaultLimits.MaxValues, "most values of a multi-valued attribute")
	fs.DurationVar(&c.storeTimeout, "store-timeout", 5*time.Second, "bound on one store operation; slower is 503")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 20*time.Second, "how long in-flight requests may take to finish on shutdown")
	fs.TextVar(&c.logLevel, "log-level", slog.LevelInfo, "least level logged: debug, info, warn, error")
	return c
}

func (c *serveConfig) validate() error {
	if c.maxBodyBytes < 2 {
		return errors.New("--max-body-bytes must be at least 2")
	}
	l := c.limits
	if l.MaxAttributes < 1 || l.MaxKeyBytes < 1 || l.MaxValueBytes < 1 || l.MaxValues < 1 {
		return errors.New("--max-attributes, --max-key-bytes, --max-value-bytes and --max-values must be positive")
	}
	if c.storeTimeout <= 0 || c.shutdownTimeout <= 0 {
		return errors.New("--store-timeout and --shutdown-timeout must be positive")
	}
	return nil
}

// serve runs the service until ctx is done, then shuts down gracefully:
// in-flight requests finish, new ones are refused.
func serve(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("userattrs serve", flag.ContinueOnError)
	cfg := serveFlags(fs)
	set, err := parseFlags(fs, args, getenv, stderr)
	if err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	if cfg.dev && !set["addr"] {
		cfg.addr = "127.0.0.1:8080"
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.logLevel}))

	verifier, readiness, err := newVerifier(ctx, cfg, logger)
	if err != nil {
		return err
	}
	policy, err := userattrs.NewPolicy(commaList(cfg.hidden), commaList(cfg.readOnly))
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	store, kind, err := openStore(ctx, cfg.store, cfg.postgresConns, cfg.autoMigrate)
	if err != nil {
		return err
	}
	defer store.Close()
	svc := userattrs.NewService(metrics.InstrumentStore(store, kind, reg), userattrs.ServiceConfig{
		Limits: cfg.limits, Policy: policy, StoreTimeout: cfg.storeTimeout,
	})
	readiness = append([]server.ReadinessCheck{{Name: "store", Check: svc.Ping}}, readiness...)

	srv := &http.Server{
		Handler: server.NewServer(server.Config{
			Service: svc, Verifier: verifier, Logger: logger, Metrics: reg,
			MaxBodyBytes: cfg.maxBodyBytes, Readiness: readiness,
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	logger.Info("listening", "addr", ln.Addr().String(), "store", kind, "version", version())

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
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

// newVerifier picks how tokens are checked: the development key with --dev,
// the OIDC issuer otherwise. With neither, the service refuses to start: it
// has no insecure default.
func newVerifier(ctx context.Context, cfg *serveConfig, logger *slog.Logger) (server.TokenVerifier, []server.ReadinessCheck, error) {
	switch {
	case cfg.dev && cfg.oidcIssuer != "":
		return nil, nil, errors.New("--dev and --oidc-issuer exclude each other: --dev trusts only the development key")
	case cfg.dev:
		key, err := auth.LoadOrCreateDevKey(cfg.dataDir)
		if err != nil {
			return nil, nil, err
		}
		logger.Warn("DEVELOPMENT MODE: trusting tokens signed by the development key in the data directory; never run this in production",
			"data_dir", cfg.dataDir)
		return key.Verifier(), nil, nil
	case cfg.oidcIssuer != "":
		v := auth.NewOIDC(auth.OIDCConfig{Issuer: cfg.oidcIssuer, Audience: cfg.oidcAudience})
		// Load the keys now so the first request does not wait for them; an
		// issuer that is not up yet is retried on use and by readiness.
		go func() {
			if err := v.Ready(ctx); err != nil {
				logger.Warn("token issuer not reachable yet", "error", err.Error())
			}
		}()
		return v, []server.ReadinessCheck{{Name: "token issuer", Check: v.Ready}}, nil
	}
	return nil, nil, errors.New("no token issuer configured: set --oidc-issuer (USERATTRS_OIDC_ISSUER), or use --dev to try the service locally")
}

// storeFlags defines the flags that name and size the store, shared by
// serve and migrate.
func storeFlags(fs *flag.FlagSet, store *string, postgresConns *int) {
	fs.StringVar(store, "store", "sqlite:data/userattrs.db", "where attributes are kept: sqlite:PATH or postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=...")
	fs.IntVar(postgresConns, "postgres-max-conns", postgres.DefaultMaxConns, "size of the PostgreSQL connection pool")
}

// openStore opens the store a --store value names and returns it with its
// kind, which is safe to log where the value itself (a URL with a password)
// is not.
func openStore(ctx context.Context, spec string, postgresConns int, migrate bool) (userattrs.Store, string, error) {
	if path, ok := strings.CutPrefix(spec, "sqlite:"); ok {
		s, err := sqlite.Open(ctx, sqlite.Config{Path: path})
		return s, "sqlite", err
	}
	if strings.HasPrefix(spec, "postgres://") || strings.HasPrefix(spec, "postgresql://") {
		s, err := postgres.Open(ctx, postgres.Config{URL: spec, MaxConns: int32(postgresConns), Migrate: migrate})
		return s, "postgres", err
	}
	return nil, "", errors.New("unknown --store: use sqlite:PATH or postgres://...")
}

// migrate applies the schema migrations of the store and exits, for
// operators who run them apart from serving (serve --auto-migrate=false).
func migrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("userattrs migrate", flag.ContinueOnError)
	var spec string
	var conns int
	storeFlags(fs, &spec, &conns)
	if _, err := parseFlags(fs, args, getenv, stderr); err != nil {
		return err
	}
	store, kind, err := openStore(ctx, spec, 2, true)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s schema is up to date\n", kind)
	return store.Close()
}
