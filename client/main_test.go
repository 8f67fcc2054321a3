package client_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/auth"
	"github.com/userattrs/userattrs/server"
	"github.com/userattrs/userattrs/store/sqlite"
)

// What the examples call: the service's HTTP handler on a SQLite store,
// with the development key's tokens. (The tests of cmd/userattrs run the
// client against the real program, on SQLite and PostgreSQL.)
var (
	serviceURL string
	adminToken string // a service account's, with user:attributes:admin
	aliceToken string // alice's own
)

func TestMain(m *testing.M) {
	stop, err := startService()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

func startService() (func(), error) {
	dir, err := os.MkdirTemp("", "userattrs-client")
	if err != nil {
		return nil, err
	}
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(dir, "userattrs.db")})
	if err != nil {
		return nil, err
	}
	key, err := auth.LoadOrCreateDevKey(dir)
	if err != nil {
		return nil, err
	}
	sign := func(sub, client string, scopes ...string) string {
		tok, _ := key.Sign(auth.TokenRequest{Subject: sub, ClientID: client, Scopes: scopes, TTL: time.Hour})
		return tok
	}
	adminToken = sign("backend", "backend", "user:attributes:admin")
	aliceToken = sign("alice", "app", "user:attributes:read", "user:attributes:write")
	svc := userattrs.NewService(st, userattrs.ServiceConfig{Limits: userattrs.DefaultLimits, StoreTimeout: 5 * time.Second})
	h := server.NewServer(server.Config{Service: svc, Verifier: key.Verifier(), Metrics: prometheus.NewRegistry(),
		MaxBodyBytes: 64 << 10, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv := httptest.NewServer(h)
	serviceURL = srv.URL
	return func() {
		srv.Close()
		st.Close()
		os.RemoveAll(dir)
	}, nil
}
