package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/auth"
	"github.com/userattrs/userattrs/internal/tracing"
)

// startTracing turns tracing on when the standard OpenTelemetry variables
// ask for it: an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), not OTEL_TRACES_EXPORTER=none nor
// OTEL_SDK_DISABLED=true. Spans go over OTLP/HTTP; the exporter and the
// sampler (OTEL_TRACES_SAMPLER) read the rest of the OTEL_* variables
// themselves. It returns the flush of what is left at shutdown, or nil
// when tracing stays off.
func startTracing(ctx context.Context, getenv func(string) string) (func(context.Context) error, error) {
	endpoint := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if endpoint == "" && getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" {
		endpoint = strings.TrimSuffix(getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), "/") + "/v1/traces"
	}
	exporter := getenv("OTEL_TRACES_EXPORTER")
	if endpoint == "" || exporter == "none" || strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return nil, nil
	}
	if exporter != "" && exporter != "otlp" {
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%s: the service exports traces over otlp only", exporter)
	}
	for _, v := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := getenv(v); p != "" && p != "http/protobuf" {
			return nil, fmt.Errorf("%s=%s: the service sends http/protobuf only (the collector's port 4318)", v, p)
		}
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
	if err != nil {
		return nil, fmt.Errorf("traces: %w", err)
	}
	// The defaults first: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win.
	res, err := resource.Merge(resource.NewSchemaless(semconv.ServiceName("userattrs"), semconv.ServiceVersion(version())),
		resource.Environment())
	if err != nil {
		return nil, fmt.Errorf("traces: OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	tracing.Enable()
	return tp.Shutdown, nil
}

// tokenMetrics counts the calls the token checks make to the issuer: the
// key-set fetches and the introspections, by outcome.
type tokenMetrics struct {
	keySets, introspections *prometheus.CounterVec
}

func newTokenMetrics(reg prometheus.Registerer) *tokenMetrics {
	m := &tokenMetrics{
		keySets: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "userattrs_oidc_key_set_fetches_total",
			Help: "Fetches of the issuer's signing keys (discovery and JWKS), by result (ok, error)."}, []string{"result"}),
		introspections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "userattrs_introspections_total",
			Help: "Calls of the introspection endpoint, by result (active, inactive, error: the endpoint failed)."}, []string{"result"}),
	}
	for _, r := range []string{"ok", "error"} {
		m.keySets.WithLabelValues(r)
	}
	for _, r := range []string{"active", "inactive", "error"} {
		m.introspections.WithLabelValues(r)
	}
	reg.MustRegister(m.keySets, m.introspections)
	return m
}

func (m *tokenMetrics) keySetFetched(err error) {
	if err != nil {
		m.keySets.WithLabelValues("error").Inc()
		return
	}
	m.keySets.WithLabelValues("ok").Inc()
}

func (m *tokenMetrics) introspected(err error) {
	switch {
	case err == nil:
		m.introspections.WithLabelValues("active").Inc()
	case errors.Is(err, auth.ErrInvalidToken):
		m.introspections.WithLabelValues("inactive").Inc()
	default:
		m.introspections.WithLabelValues("error").Inc()
	}
}

// registerReadCache exposes the read cache's counts, read at each scrape.
func registerReadCache(reg prometheus.Registerer, svc *userattrs.Service) {
	if _, on := svc.ReadCacheStats(); !on {
		return
	}
	stat := func(pick func(userattrs.ReadCacheStats) float64) func() float64 {
		return func() float64 {
			st, _ := svc.ReadCacheStats()
			return pick(st)
		}
	}
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "userattrs_read_cache_hits_total",
			Help: "Reads the read cache answered."}, stat(func(s userattrs.ReadCacheStats) float64 { return float64(s.Hits) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "userattrs_read_cache_misses_total",
			Help: "Reads the read cache sent on to the store."}, stat(func(s userattrs.ReadCacheStats) float64 { return float64(s.Misses) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "userattrs_read_cache_users",
			Help: "Users the read cache holds."}, stat(func(s userattrs.ReadCacheStats) float64 { return float64(s.Users) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "userattrs_read_cache_bytes",
			Help: "Bytes the read cache holds, as it counts them against --read-cache-max-bytes."},
			stat(func(s userattrs.ReadCacheStats) float64 { return float64(s.Bytes) })),
	)
}

// registerDisk exposes the free and total bytes of the file system that
// holds dir (the data directory, or the SQLite file's), for the full-disk
// alert: a full disk stops every write of an embedded store.
func registerDisk(reg prometheus.Registerer, dir string) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return
	}
	statfs := func(pick func(*syscall.Statfs_t) uint64) func() float64 {
		return func() float64 {
			var st syscall.Statfs_t
			if syscall.Statfs(dir, &st) != nil {
				return 0
			}
			return float64(pick(&st)) * float64(st.Bsize)
		}
	}
	labels := prometheus.Labels{"dir": dir}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "userattrs_disk_free_bytes", ConstLabels: labels,
			Help: "Bytes free to the service on the file system of its data."}, statfs(func(s *syscall.Statfs_t) uint64 { return s.Bavail })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "userattrs_disk_size_bytes", ConstLabels: labels,
			Help: "Size of the file system of the service's data, in bytes."}, statfs(func(s *syscall.Statfs_t) uint64 { return s.Blocks })),
	)
}
