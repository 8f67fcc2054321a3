package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A second process on a SQLite file that one serves refuses to start, with
// one line that names the file and says what to use for several instances.
func TestOneProcessPerSQLiteFile(t *testing.T) {
	dir := t.TempDir()
	startServe(t, dir, nil, "--dev")
	cmd := exec.Command(userattrsBinary(t), "serve", "--dev", "--addr", "127.0.0.1:0")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the second process exited 0")
		}
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the second process started on the same file")
	}
	last := strings.TrimSpace(stderr.String())
	last = last[strings.LastIndex(last, "\n")+1:]
	if !strings.Contains(last, filepath.Join("data", "userattrs.db")) || !strings.Contains(last, "PostgreSQL") {
		t.Fatalf("refusal: %q", last)
	}
}

// --data-dir holds everything of the service: the development key and the
// default database.
func TestDataDir(t *testing.T) {
	work, data := t.TempDir(), filepath.Join(t.TempDir(), "state")
	p := startServe(t, work, nil, "--dev", "--data-dir", data)
	tok := mintToken(t, work, "--sub", "alice", "--data-dir", data)
	if status, _ := call(t, "PUT", p.url+"/user/2024-2/attributes", tok, `{"a":"1"}`); status != 204 {
		t.Fatalf("PUT: %d", status)
	}
	for _, name := range []string{"userattrs.db", "dev-signing-key.pem"} {
		if _, err := os.Stat(filepath.Join(data, name)); err != nil {
			t.Errorf("%s is not in --data-dir: %v", name, err)
		}
	}
	if entries, _ := os.ReadDir(work); len(entries) != 0 {
		t.Errorf("the working directory got %v", entries)
	}
}

// Settings that make no sense stop the program at start, each with one
// line, before anything is opened.
func TestNonsensicalSettings(t *testing.T) {
	for _, args := range [][]string{
		{"--postgres-max-conns", "-3"},
		{"--postgres-max-conns", "0"},
		{"--read-cache-ttl", "0s"},
		{"--read-cache-ttl", "-1s"},
		{"--shutdown-delay", "-1s"},
		{"--max-user-bytes", "0"},
		{"--read-cache-max-bytes", "-1"},
		{"--history-max-records", "-1"},
		{"--dev", "--admin-service-account-claim", "userattrs_service_account"},
		{"--dev", "--events-source", "%zz"},
		{"--dev", "--events-source", ""},
		{"--history-max-bytes", "1MiB"},
		{"--max-connections", "0"},
		{"--max-idle-connections", "-1"},
		{"--max-store-operations", "0"},
		{"--rate-limit-per-user", "-1"},
		{"--rate-limit-per-client", "-0.5"},
		{"--oidc-issuer", "not-a-url", "--store", "memory:"},
		{"--oidc-issuer", "ftp://issuer.example", "--store", "memory:"},
		{"--oidc-issuer", "https://issuer.example", "--store", "memory:"}, // no audience
		{"--oidc-issuer", "https://issuer.example", "--oidc-audience", "api", "--oidc-keys-max-age", "0s", "--store", "memory:"},
	} {
		dir := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var stderr bytes.Buffer
		err := run(ctx, append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dir}, args...),
			func(string) string { return "" }, io.Discard, &stderr)
		cancel()
		if err == nil || strings.Contains(err.Error(), "\n") || stderr.Len() != 0 {
			t.Errorf("%v: %v, stderr %q", args, err, stderr.String())
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("%v opened %v before refusing", args, entries)
		}
	}
}

// migrate takes only the flags it uses, and says so where a store keeps no
// schema instead of claiming to have checked one.
func TestMigrate(t *testing.T) {
	var out bytes.Buffer
	run(context.Background(), []string{"migrate", "-h"}, func(string) string { return "" }, &out, io.Discard)
	if strings.Contains(out.String(), "-postgres-max-conns") || !strings.Contains(out.String(), "-store") {
		t.Errorf("migrate -h:\n%s", out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"migrate", "--store", "keycloak"}, func(string) string { return "" }, &out, io.Discard); err != nil ||
		!strings.Contains(out.String(), "nothing to migrate") {
		t.Errorf("migrate keycloak: %v %q", err, out.String())
	}
	out.Reset()
	dir := t.TempDir()
	if err := run(context.Background(), []string{"migrate", "--data-dir", dir}, func(string) string { return "" }, &out, io.Discard); err != nil ||
		!strings.Contains(out.String(), "sqlite schema is up to date") {
		t.Errorf("migrate sqlite: %v %q", err, out.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "userattrs.db")); err != nil {
		t.Errorf("migrate did not create the default database: %v", err)
	}
}

// On SIGTERM readiness fails first while requests are still served, for
// --shutdown-delay; then the listener closes. Probes and scrapes are not
// logged at info.
func TestShutdownDelay(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, dir, nil, "--dev", "--shutdown-delay", "1500ms")
	tok := mintToken(t, dir, "--sub", "alice")
	for _, path := range []string{"/health/liveness", "/health/readiness", "/metrics"} {
		call(t, "GET", p.url+path, "", "")
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	if status, _ := call(t, "GET", p.url+"/health/readiness", "", ""); status != 503 {
		t.Fatalf("readiness during the delay: %d", status)
	}
	if status, _ := call(t, "GET", p.url+"/user/2024-2/attributes", tok, ""); status != 200 {
		t.Fatalf("a request during the delay: %d", status)
	}
	if err := p.wait(t, 10*time.Second); err != nil {
		t.Fatalf("exit: %v", err)
	}
	if strings.Contains(p.logs.String(), `"route":"GET /health/liveness"`) || strings.Contains(p.logs.String(), `"route":"GET /metrics"`) {
		t.Errorf("probes logged at info:\n%s", p.logs.String())
	}
}
