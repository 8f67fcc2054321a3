// Package pgtest gives tests a real PostgreSQL server: the one named by
// USERATTRS_TEST_POSTGRES, or a cluster of its own started from the
// installed server binaries in a temporary directory on a free loopback
// port, and removed afterwards.
package pgtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/xid"
	"github.com/userattrs/userattrs/internal/testutil"
)

// EnvURL names an existing database to test against instead of starting a
// cluster.
const EnvURL = "USERATTRS_TEST_POSTGRES"

// Server is a PostgreSQL server for tests.
type Server struct {
	// URL connects to its administrative database.
	URL string

	own     bool // started here, so it can be stopped and started again
	bin     string
	dir     string
	cred    *syscall.Credential
	port    int
	stopped bool
}

var (
	shared    *Server
	sharedErr error
	once      sync.Once
)

// Shared returns the server of this test binary, starting it on first use.
// A test binary that uses it calls Cleanup from TestMain. Without a server
// binary the test is skipped, except under CI=true, where it fails: CI
// always tests against a real server.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	once.Do(func() { shared, sharedErr = Start() })
	if sharedErr != nil {
		if os.Getenv("CI") != "true" && strings.Contains(sharedErr.Error(), "no PostgreSQL server binaries") {
			tb.Skipf("pgtest: %v (set %s or install PostgreSQL)", sharedErr, EnvURL)
		}
		tb.Fatalf("pgtest: %v", sharedErr)
	}
	return shared
}

// Cleanup stops and removes the shared cluster, if one was started.
func Cleanup() {
	if shared != nil {
		shared.Close()
	}
}

// Close stops and removes a cluster Start started.
func (s *Server) Close() {
	if s.own {
		s.pgctl("stop", "-m", "immediate")
		os.RemoveAll(s.dir)
	}
}

// Start returns the server named by USERATTRS_TEST_POSTGRES, or starts a
// cluster of its own.
func Start() (*Server, error) {
	if url := os.Getenv(EnvURL); url != "" {
		return &Server{URL: url}, nil
	}
	bin, err := findBinaries()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "userattrs-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{own: true, bin: bin, dir: dir}
	// PostgreSQL refuses to run as root: run it as the postgres user then.
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root and there is no postgres user to run the server as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	if out, err := s.command("initdb", "-D", s.dataDir(), "-U", "postgres", "--auth=trust",
		"--no-sync", "-E", "UTF8", "--locale=C").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if s.port, err = testutil.FreePort(); err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	s.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
	return s, nil
}

// findBinaries returns the directory of the newest installed PostgreSQL
// server binaries.
func findBinaries() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		return filepath.Dir(p), nil
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(found) == 0 {
		return "", fmt.Errorf("no PostgreSQL server binaries (pg_ctl) found")
	}
	sort.Slice(found, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(found[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(found[j]))))
		return vi > vj
	})
	return filepath.Dir(found[0]), nil
}

func (s *Server) dataDir() string { return filepath.Join(s.dir, "data") }

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd
}

func (s *Server) pgctl(args ...string) error {
	args = append([]string{"-D", s.dataDir(), "-w", "-t", "60"}, args...)
	if out, err := s.command("pg_ctl", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// CanRestart reports whether the tests may stop and start this server.
func (s *Server) CanRestart() bool { return s.own }

// Stop stops the server (fast shutdown: connections are cut, committed
// data stays).
func (s *Server) Stop() error {
	s.stopped = true
	return s.pgctl("stop", "-m", "fast")
}

// Start starts the server, listening on 127.0.0.1 only.
func (s *Server) Start() error {
	s.stopped = false
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=%s -c max_connections=200",
		s.port, s.dir)
	return s.pgctl("start", "-l", filepath.Join(s.dir, "log"), "-o", opts)
}

// NewDatabase returns the URL of an empty schema of its own, so that tests
// do not see each other's data.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	url, err := s.CreateSchema()
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return url
}

// CreateSchema creates an empty schema and returns the URL that uses it.
func (s *Server) CreateSchema() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		return "", fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	schema := "test_" + xid.New().String()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return "", fmt.Errorf("create schema: %w", err)
	}
	sep := "?"
	if strings.Contains(s.URL, "?") {
		sep = "&"
	}
	return s.URL + sep + "search_path=" + schema, nil
}

// Main runs the tests of a package that uses Shared and removes the cluster
// afterwards: call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

// NewJDBCDatabase creates an empty database of its own, for a Java server
// such as Keycloak, and returns its JDBC URL and user name.
func (s *Server) NewJDBCDatabase(tb testing.TB) (jdbcURL, username string) {
	tb.Helper()
	if !s.own {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("pgtest: %s names a server whose address a JDBC URL cannot be made from", EnvURL)
		}
		tb.Skipf("pgtest: %s names a server whose address a JDBC URL cannot be made from", EnvURL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		tb.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	name := "db_" + xid.New().String()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	return fmt.Sprintf("jdbc:postgresql://127.0.0.1:%d/%s", s.port, name), "postgres"
}
