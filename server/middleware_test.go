package server

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/xid"
)

// FuzzRequestID checks what a client's Request-Id can do: an id the
// service would have made itself is kept, anything else is replaced by a
// fresh one and never reaches the response or the log.
func FuzzRequestID(f *testing.F) {
	for _, s := range []string{"", xid.New().String(), "9m4e2mr0ui3e8a215n4g", "abc", "../../etc", "\x00\r\nX-Injected: 1", strings.Repeat("a", 20), "9M4E2MR0UI3E8A215N4G"} {
		f.Add(s)
	}
	var logs bytes.Buffer
	var seen string
	h := observe(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = requestID(r.Context())
	}), slog.New(slog.NewJSONHandler(&logs, nil)), newHTTPMetrics(prometheus.NewRegistry()))
	f.Fuzz(func(t *testing.T, sent string) {
		logs.Reset()
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header["Request-Id"] = []string{sent}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		got := w.Header().Get("Request-Id")
		if _, err := xid.FromString(got); err != nil {
			t.Fatalf("sent %q, answered with id %q, which the service does not make", sent, got)
		}
		if seen != got {
			t.Fatalf("the handler saw id %q, the response carries %q", seen, got)
		}
		_, sentErr := xid.FromString(sent)
		if (sentErr == nil) != (got == sent) {
			t.Fatalf("sent %q (well formed: %v), answered with %q", sent, sentErr == nil, got)
		}
		if sentErr != nil && len(sent) >= 4 && strings.Contains(logs.String(), sent) {
			t.Fatalf("a rejected id %q reached the log", sent)
		}
	})
}
