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
	extra   string // further server settings (-c name=value ...)
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
		// Often a link into the version's own directory, beside the
		// other binaries (initdb, pg_basebackup).
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
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

// DataDir returns the server's data directory, for tests that read its
// files; false for a server not started here.
func (s *Server) DataDir() (string, bool) { return s.dataDir(), s.own }

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
	return s.pgctl("start", "-l", filepath.Join(s.dir, "log"), "-o", s.options())
}

func (s *Server) options() string {
	return strings.TrimSpace(fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=%s -c max_connections=200 %s",
		s.port, s.dir, s.extra))
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

// Pair is a primary and a synchronous streaming standby, each a cluster of
// its own on loopback, as operators run PostgreSQL past one machine.
type Pair struct {
	Primary, Standby *Server
}

// StartPair starts a primary whose every commit waits for the standby
// (synchronous_standby_names '*', synchronous_commit on) and a standby
// made from it with pg_basebackup; both are removed when the test ends.
// Without server binaries the test is skipped, except under CI=true.
func StartPair(tb testing.TB) *Pair {
	tb.Helper()
	primary, err := Start()
	if err == nil && !primary.own {
		tb.Skipf("pgtest: %s names one server; a standby needs clusters of the tests' own", EnvURL)
	}
	if err != nil {
		if os.Getenv("CI") != "true" && strings.Contains(err.Error(), "no PostgreSQL server binaries") {
			tb.Skipf("pgtest: %v", err)
		}
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(primary.Close)
	primary.extra = "-c wal_level=replica -c max_wal_senders=4 -c synchronous_standby_names='*' -c synchronous_commit=on"
	if err := primary.pgctl("restart", "-m", "fast", "-l", filepath.Join(primary.dir, "log"), "-o", primary.options()); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}

	standby := &Server{own: true, bin: primary.bin, cred: primary.cred}
	if standby.dir, err = os.MkdirTemp("", "userattrs-pg-standby-"); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(standby.Close)
	if standby.cred != nil {
		os.Chown(standby.dir, int(standby.cred.Uid), int(standby.cred.Gid))
	}
	if out, err := standby.command("pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(primary.port), "-U", "postgres",
		"-D", standby.dataDir(), "-R", "-X", "stream", "--no-sync").CombinedOutput(); err != nil {
		tb.Fatalf("pgtest: pg_basebackup: %v\n%s", err, out)
	}
	if standby.port, err = testutil.FreePort(); err != nil {
		tb.Fatal(err)
	}
	if err := standby.Start(); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	standby.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", standby.port)
	// The standby counts as synchronous once it has caught up.
	deadline := time.Now().Add(30 * time.Second)
	for primary.query(tb, "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'") != "1" {
		if time.Now().After(deadline) {
			tb.Fatal("pgtest: the standby never became synchronous")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return &Pair{Primary: primary, Standby: standby}
}

// URL connects to whichever of the two accepts writes, as a client given
// both hosts does.
func (p *Pair) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/postgres?sslmode=disable&target_session_attrs=read-write",
		p.Primary.port, p.Standby.port)
}

// Kill ends the server's postmaster with SIGKILL, as a crashed machine
// would; its children go with it.
func (s *Server) Kill() error {
	pid, err := os.ReadFile(filepath.Join(s.dataDir(), "postmaster.pid"))
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(strings.SplitN(string(pid), "\n", 2)[0])
	if err != nil {
		return err
	}
	s.stopped = true
	if err := syscall.Kill(n, syscall.SIGKILL); err != nil {
		return err
	}
	// The backends notice their postmaster is gone; give them a moment to
	// let go of the port.
	for range 50 {
		if syscall.Kill(n, 0) != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	exec.Command("pkill", "-9", "-f", "-u", "postgres", s.dataDir()).Run()
	return nil
}

// Promote makes a standby the primary.
func (s *Server) Promote() error { return s.pgctl("promote") }

func (s *Server) query(tb testing.TB, q string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		tb.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, q).Scan(&v); err != nil {
		tb.Fatalf("pgtest: %s: %v", q, err)
	}
	return v
}
