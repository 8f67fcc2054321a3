package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/userattrs/userattrs/internal/sdkdecode"
	"github.com/userattrs/userattrs/internal/testmain"
	"github.com/userattrs/userattrs/internal/testutil"
)

// Everything every process of the suite logged, and everything secret the
// suite sent: TestMain finds none of the latter in the former.
var scan testutil.LogScan

func TestMain(m *testing.M) {
	code := testmain.Finish(m.Run(), &scan)
	if binary != "" && buildErr == nil {
		os.RemoveAll(filepath.Dir(binary))
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// userattrsBinary builds the real program once per test run.
func userattrsBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "userattrs-bin")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "userattrs")
		out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
		if err != nil {
			buildErr = err
			binary = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build: %v\n%s", buildErr, binary)
	}
	return binary
}

// process is a running `userattrs serve`.
type process struct {
	cmd  *exec.Cmd
	url  string
	logs *testutil.SyncBuffer
	// exited is closed when the process has exited, with exitErr set.
	exited  chan struct{}
	exitErr error
}

// wait waits for the process to exit and returns its exit error.
func (p *process) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.exitErr
	case <-time.After(timeout):
		t.Fatalf("the process did not exit within %s\n%s", timeout, p.logs.String())
		return nil
	}
}

// startServe runs `userattrs serve args...` in dir on a free port and waits
// until it reports the address it listens on.
func startServe(t *testing.T, dir string, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(userattrsBinary(t), append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, logs: &testutil.SyncBuffer{}, exited: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.logs.Write([]byte(line + "\n"))
			scan.Logs.Write([]byte(line + "\n"))
			var entry struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "listening" {
				addr <- entry.Addr
			}
		}
		p.exitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
	})
	select {
	case a := <-addr:
		p.url = "http://" + a
	case <-p.exited:
		t.Fatalf("serve exited: %v\n%s", p.exitErr, p.logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not start\n%s", p.logs.String())
	}
	return p
}

func mintToken(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(userattrsBinary(t), append([]string{"token"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	scan.Secrets.Add(strings.TrimSpace(string(out)))
	return strings.TrimSpace(string(out))
}

func call(t *testing.T, method, url, token, body string, headers ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	scan.Secrets.Add(token)
	scan.Secrets.AddBody(body)
	for i := 0; i < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if method == "GET" && resp.StatusCode == http.StatusOK && selfServiceAttributes.MatchString(req.URL.Path) {
		sdkdecode.CheckIOS(t, b)
	}
	return resp.StatusCode, string(b)
}

// waitReady waits until the process's readiness answers 200, for at most
// within, and returns how long that took.
func (p *process) waitReady(t *testing.T, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if status, _ := call(t, "GET", p.url+"/health/readiness", "", ""); status == 200 {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("not ready within %v\n%s", within, p.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// selfServiceAttributes matches the path of the self-service attributes
// route, whose answers the iOS SDK decodes.
var selfServiceAttributes = regexp.MustCompile(`^/user/[^/]+/attributes$`)

// A newcomer's first minutes: serve --dev, mint a token, PUT the published
// example, GET it back as the Android client does.
func TestWalkthrough(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, dir, nil, "--dev")
	if !strings.Contains(p.logs.String(), "DEVELOPMENT MODE") {
		t.Fatalf("--dev does not warn:\n%s", p.logs.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "userattrs.db")); err != nil {
		t.Fatalf("the default store is not data/userattrs.db: %v", err)
	}
	tok := mintToken(t, dir, "--sub", "alice")

	status, body := call(t, "PUT", p.url+"/user/2024-3/attributes", tok, `{"referred":"false","tos_accepted":"true"}`,
		"Content-Type", "application/json")
	if status != 204 || body != "" {
		t.Fatalf("PUT: %d %s", status, body)
	}
	status, body = call(t, "GET", p.url+"/user/2025-1/attributes", tok, "", "Accept", "application/vnd.api+json")
	if status != 200 || body != `{"referred":"false","tos_accepted":"true"}` {
		t.Fatalf("GET: %d %s", status, body)
	}
	readOnly := mintToken(t, dir, "--sub", "alice", "--scope", "user:attributes:read")
	if status, _ := call(t, "PUT", p.url+"/user/2024-3/attributes", readOnly, `{}`); status != 403 {
		t.Fatalf("PUT with a read-only token: %d", status)
	}
	for _, path := range []string{"/health/liveness", "/health/readiness", "/metrics"} {
		if status, _ := call(t, "GET", p.url+path, "", ""); status != 200 {
			t.Fatalf("%s: %d", path, status)
		}
	}
	if strings.Contains(p.logs.String(), tok) {
		t.Fatal("a token reached the log")
	}
}

// SIGTERM lets the request in flight finish, refuses new ones, and exits 0.
func TestGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, dir, nil, "--dev")
	tok := mintToken(t, dir, "--sub", "alice")

	body, feed := io.Pipe()
	req, _ := http.NewRequest("PUT", p.url+"/user/2024-3/attributes", body)
	req.Header.Set("Authorization", "Bearer "+tok)
	type result struct {
		status int
		err    error
	}
	inFlight := make(chan result, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			inFlight <- result{0, err}
			return
		}
		resp.Body.Close()
		inFlight <- result{resp.StatusCode, nil}
	}()
	feed.Write([]byte(`{"during":`))
	time.Sleep(300 * time.Millisecond) // the handler is now reading the body

	p.cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := (&http.Client{Timeout: time.Second}).Get(p.url + "/health/liveness")
		if err != nil {
			break // new connections are refused
		}
		if time.Now().After(deadline) {
			t.Fatal("still accepting new requests after SIGTERM")
		}
		time.Sleep(50 * time.Millisecond)
	}
	feed.Write([]byte(`"shutdown"}`))
	feed.Close()
	if r := <-inFlight; r.err != nil || r.status != 204 {
		t.Fatalf("in-flight PUT: %d %v", r.status, r.err)
	}
	if err := p.wait(t, 10*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.logs.String())
	}

	again := startServe(t, dir, nil, "--dev")
	if _, got := call(t, "GET", again.url+"/user/2025-1/attributes", tok, ""); got != `{"during":"shutdown"}` {
		t.Fatalf("after restart: %s", got)
	}
}

// What got a 204 survives kill -9.
func TestCrashDurability(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, dir, nil, "--dev")
	tok := mintToken(t, dir, "--sub", "alice")
	for i := range 20 {
		if status, _ := call(t, "PUT", p.url+"/user/2024-3/attributes", tok, `{"k`+string(rune('a'+i))+`":"v"}`); status != 204 {
			t.Fatalf("PUT %d: %d", i, status)
		}
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.wait(t, 10*time.Second)
	again := startServe(t, dir, nil, "--dev")
	_, got := call(t, "GET", again.url+"/user/2025-1/attributes", tok, "")
	var attrs map[string]string
	if err := json.Unmarshal([]byte(got), &attrs); err != nil || len(attrs) != 20 {
		t.Fatalf("after kill -9: %d attributes (%v): %s", len(attrs), err, got)
	}
}

// Every flag can come from USERATTRS_<FLAG>; the command line wins.
func TestEnvironment(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, dir, []string{"USERATTRS_MAX_BODY_BYTES=16", "USERATTRS_READONLY_ATTRIBUTES=tos_*", "USERATTRS_DEV=true"})
	tok := mintToken(t, dir, "--sub", "alice")
	if status, _ := call(t, "PUT", p.url+"/user/2024-3/attributes", tok, `{"a":"0123456789abcdef"}`); status != 413 {
		t.Fatalf("body over USERATTRS_MAX_BODY_BYTES: %d", status)
	}
	if status, _ := call(t, "PUT", p.url+"/user/2024-3/attributes", tok, `{"tos_x":"1"}`); status != 403 {
		t.Fatalf("attribute read-only by USERATTRS_READONLY_ATTRIBUTES: %d", status)
	}
	// Another process on the same directory needs a database of its own.
	q := startServe(t, dir, []string{"USERATTRS_MAX_BODY_BYTES=16", "USERATTRS_DEV=true", "USERATTRS_STORE=sqlite:other.db"}, "--max-body-bytes", "1000")
	if status, _ := call(t, "PUT", q.url+"/user/2024-3/attributes", tok, `{"a":"0123456789abcdef"}`); status != 204 {
		t.Fatalf("the command line does not win over the environment: %d", status)
	}
}

func TestRefusesToStartInsecurely(t *testing.T) {
	var stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--store", "sqlite:" + filepath.Join(t.TempDir(), "x.db")},
		func(string) string { return "" }, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "--oidc-issuer") {
		t.Fatalf("serve without an issuer: %v", err)
	}
}

// Help is asked for and printed to standard output; a wrong flag is one
// line, a usage error; the default log level reads as the README writes it.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"help"}, {"serve", "-h"}, {"token", "--help"}, {"migrate", "-h"}} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, func(string) string { return "" }, &out, &errOut); err != nil {
			t.Errorf("%v: %v", args, err)
		}
		if out.Len() == 0 || errOut.Len() != 0 {
			t.Errorf("%v: stdout %q, stderr %q", args, out.String(), errOut.String())
		}
	}
	var out bytes.Buffer
	run(context.Background(), []string{"serve", "-h"}, func(string) string { return "" }, &out, io.Discard)
	for _, want := range []string{"USERATTRS_<FLAG>", "info (the default)", "-api-versions", `(default "2024-2,2024-3,2025-1")`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("serve -h lacks %q:\n%s", want, out.String())
		}
	}
	var errOut bytes.Buffer
	err := run(context.Background(), []string{"serve", "--bogus"}, func(string) string { return "" }, io.Discard, &errOut)
	var usage usageError
	if !errors.As(err, &usage) || strings.Count(err.Error(), "bogus") != 1 || errOut.Len() != 0 {
		t.Errorf("a wrong flag: %v, stderr %q", err, errOut.String())
	}
}

// token refuses to make a key of its own: the server would not trust it.
func TestTokenNeedsTheServersKey(t *testing.T) {
	dir := t.TempDir()
	err := run(context.Background(), []string{"token", "--sub", "alice", "--data-dir", dir}, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "dev-signing-key.pem")) || !strings.Contains(err.Error(), "--data-dir") {
		t.Fatalf("token without a key: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("token wrote %v", entries)
	}
}

func TestCommands(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, os.Getenv, &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "userattrs ") {
		t.Fatalf("version: %v %q", err, out.String())
	}
	data := t.TempDir()
	for _, args := range [][]string{
		{"bogus"}, {"token", "--data-dir", data},
		{"serve", "--store", "mysql://x", "--dev", "--data-dir", data},
		{"serve", "--max-values", "0", "--dev", "--data-dir", data},
		{"serve", "--dev", "--oidc-issuer", "https://issuer.example", "--data-dir", data},
		{"serve", "--dev", "--log-level", "loud", "--data-dir", data},
		{"serve", "--dev", "--api-versions", "2024-2,latest", "--data-dir", data},
		{"serve", "--dev", "--api-versions", ",", "--data-dir", data},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := run(ctx, args, func(string) string { return "" }, io.Discard, io.Discard)
		cancel()
		if err == nil {
			t.Errorf("%v succeeded", args)
		}
	}
}
