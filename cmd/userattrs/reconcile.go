package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store/keycloak"
)

// directoryFlags are the Keycloak whose users a reconciliation checks the
// store's against: the flags the Keycloak store registers (--keycloak-url,
// --keycloak-realm, --keycloak-client-id, and the secret from
// USERATTRS_KEYCLOAK_CLIENT_SECRET), read by name.
func directoryFlags(fs *flag.FlagSet, timeout time.Duration) (*keycloak.Store, error) {
	value := func(name string) string {
		if f := fs.Lookup(name); f != nil {
			return f.Value.String()
		}
		return ""
	}
	cfg := keycloak.Config{URL: value("keycloak-url"), Realm: value("keycloak-realm"), ClientID: value("keycloak-client-id"),
		ClientSecret: value("keycloak-client-secret"), AdminAPIOnly: value("keycloak-admin-api-only") == "true", Timeout: timeout}
	if cfg.URL == "" || cfg.Realm == "" || cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, usageError{errors.New("reconciliation asks Keycloak: give --keycloak-url, --keycloak-realm, --keycloak-client-id " +
			"and USERATTRS_KEYCLOAK_CLIENT_SECRET")}
	}
	return keycloak.Open(cfg)
}

// reconcileActor is who the records of a reconciliation's erasures name.
const reconcileActor = "userattrs-reconcile"

// reconcile lists, and with --apply erases, the users of the store that
// Keycloak no longer knows.
func reconcile(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("userattrs reconcile", flag.ContinueOnError)
	var cfg storeConfig
	cfg.flags(fs)
	apply := fs.Bool("apply", false, "erase the users Keycloak no longer knows (without it they are only listed)")
	maxErasures := fs.Int("max-erasures", 0, "stop, erasing none, when more users than this are unknown (0: no bound)")
	fs.BoolVar(&cfg.events, "events", false, "queue the erasures' change events, for the instances' dispatchers to send "+
		"(give it when serve runs with change events on)")
	if _, err := parseFlags(fs, args, getenv, stdout); err != nil {
		return err
	}
	if *maxErasures < 0 {
		return usageError{errors.New("--max-erasures must not be negative")}
	}
	dir, err := directoryFlags(fs, cfg.timeout)
	if err != nil {
		return err
	}
	defer dir.Close()
	svc, closeStore, err := cfg.openService(ctx, stderr, userattrs.PolicyConfig{})
	if err != nil {
		return err
	}
	defer closeStore()
	start := time.Now()
	res, err := svc.Reconcile(userattrs.WithOrigin(ctx, commandOrigin(reconcileActor)), dir, userattrs.ReconcileConfig{
		Apply: *apply, MaxErasures: *maxErasures, Unknown: func(user string) { fmt.Fprintln(stdout, user) }})
	fmt.Fprintf(stderr, "checked %d users in %v: %d unknown to Keycloak, %d erased\n", res.Checked, time.Since(start).Round(time.Millisecond),
		res.Unknown, res.Erased)
	return err
}

// reconciler runs reconciliations every interval from serve, on one
// instance at a time where the store is shared (JobLock).
type reconciler struct {
	svc         *userattrs.Service
	dir         userattrs.Directory
	lock        userattrs.JobLock // nil: this instance is the store's only one
	interval    time.Duration
	maxErasures int
	logger      *slog.Logger
	runs        *prometheus.CounterVec
	erased      prometheus.Counter
}

func newReconciler(svc *userattrs.Service, st userattrs.Store, dir userattrs.Directory, interval time.Duration, maxErasures int,
	logger *slog.Logger, reg prometheus.Registerer) *reconciler {
	r := &reconciler{svc: svc, dir: dir, interval: interval, maxErasures: maxErasures, logger: logger,
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "userattrs_reconcile_runs_total",
			Help: "Reconciliations with the identity provider, by result: done, failed, or skipped (another instance ran it)."}, []string{"result"}),
		erased: prometheus.NewCounter(prometheus.CounterOpts{Name: "userattrs_reconcile_erased_total",
			Help: "Users erased because the identity provider no longer knows them."})}
	if st.Capabilities().SharedAcrossInstances {
		r.lock, _ = userattrs.As[userattrs.JobLock](st)
	}
	reg.MustRegister(r.runs, r.erased)
	return r
}

// run reconciles every interval until ctx ends.
func (r *reconciler) run(ctx context.Context) {
	for sleep(ctx, r.interval) {
		r.once(ctx)
	}
}

func (r *reconciler) once(ctx context.Context) {
	if r.lock != nil {
		unlock, ok, err := r.lock.TryLock(ctx, "reconcile")
		if err != nil || !ok {
			if err != nil && ctx.Err() == nil {
				r.logger.Warn("reconcile: cannot take the lock; trying again at the next interval", "error", err.Error())
			}
			r.runs.WithLabelValues("skipped").Inc()
			return
		}
		defer unlock()
	}
	start := time.Now()
	origin := commandOrigin(reconcileActor)
	res, err := r.svc.Reconcile(userattrs.WithOrigin(ctx, origin), r.dir, userattrs.ReconcileConfig{Apply: true, MaxErasures: r.maxErasures})
	r.erased.Add(float64(res.Erased))
	if err != nil {
		if ctx.Err() == nil {
			r.logger.Error("reconcile: failed", "error", err.Error(), "checked", res.Checked, "unknown", res.Unknown, "erased", res.Erased,
				"request_id", origin.RequestID)
		}
		r.runs.WithLabelValues("failed").Inc()
		return
	}
	r.runs.WithLabelValues("done").Inc()
	r.logger.Info("reconcile: done", "checked", res.Checked, "erased", res.Erased, "duration", time.Since(start).String(),
		"request_id", origin.RequestID)
}
