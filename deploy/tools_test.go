// Package deploy holds the tests of the operators' kit: the image run by
// podman, the Helm chart checked by helm and kubeconform, the Prometheus
// rules and the dashboard's queries checked by promtool, and the traces
// received by a real OpenTelemetry Collector.
package deploy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/userattrs/userattrs/internal/testutil"
)

// opsTools runs scripts/ops-tools.sh once for the package and returns what
// it exported: OPS_PROMTOOL, OPS_HELM, OPS_KUBECONFORM, OPS_OTELCOL,
// OPS_KUBE_SCHEMAS.
var opsTools = sync.OnceValues(func() (map[string]string, error) {
	cmd := exec.Command(filepath.Join(repoRoot(), "scripts", "ops-tools.sh"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ops-tools.sh: %v\n%s", err, stderr.String())
	}
	return exports(stdout.String()), nil
})

func tools(t *testing.T) map[string]string {
	t.Helper()
	m, err := opsTools()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// exports reads `export NAME=VALUE` lines.
func exports(s string) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		name, value, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		if ok {
			m[name] = strings.Trim(value, `"`)
		}
	}
	return m
}

func repoRoot() string {
	root, err := testutil.RepoRoot()
	if err != nil {
		panic(err)
	}
	return root
}

// run runs a command and returns its combined output; it fails the test
// when the command fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := runErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = repoRoot()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// runStdout is runErr with the standard output alone, and the standard
// error only where the command failed.
func runStdout(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = repoRoot()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}

// buildService builds the userattrs binary once for the package.
var buildService = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "userattrs-deploy-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "userattrs")
	out, err := runErr("go", "build", "-o", bin, "./cmd/userattrs")
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// service is a running `userattrs serve` of the test.
type service struct {
	url, dataDir, bin string
	log               *testutil.SyncBuffer
}

// startService runs `userattrs serve --dev` on a data directory of its own
// with the extra args and environment, until the test ends.
func startService(t *testing.T, env []string, args ...string) *service {
	t.Helper()
	bin, err := buildService()
	if err != nil {
		t.Fatal(err)
	}
	port, err := testutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s := &service{url: fmt.Sprintf("http://127.0.0.1:%d", port), dataDir: t.TempDir(), bin: bin, log: &testutil.SyncBuffer{}}
	cmd := exec.Command(bin, append([]string{"serve", "--dev", "--addr", fmt.Sprintf("127.0.0.1:%d", port), "--data-dir", s.dataDir}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(s.url + "/health/readiness"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-done:
			t.Fatalf("userattrs serve ended:\n%s", s.log.String())
		default:
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("userattrs serve not ready after 30s:\n%s", s.log.String())
		}
	}
}

// token mints a development token of user.
func (s *service) token(t *testing.T, user string, extra ...string) string {
	t.Helper()
	return strings.TrimSpace(run(t, s.bin, append([]string{"token", "--data-dir", s.dataDir, "--sub", user}, extra...)...))
}

// do sends a request with a bearer token and returns the status and body.
func do(t *testing.T, method, url, token, body string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
