package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/userattrs/userattrs/internal/testutil"
)

// healthcheck exits 0 while the instance at --addr (or USERATTRS_ADDR) is
// ready, and fails, saying why, when nothing answers; the metrics carry
// the version `userattrs version` prints.
func TestHealthcheckAndBuildInfo(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, dir, nil, "--dev", "--data-dir", dir)
	addr := strings.TrimPrefix(p.url, "http://")
	if out, err := exec.Command(userattrsBinary(t), "healthcheck", "--addr", addr).CombinedOutput(); err != nil {
		t.Fatalf("healthcheck of a ready instance: %v %s", err, out)
	}
	cmd := exec.Command(userattrsBinary(t), "healthcheck")
	cmd.Env = append(os.Environ(), "USERATTRS_ADDR="+addr)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("healthcheck with USERATTRS_ADDR: %v %s", err, out)
	}
	port, err := testutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(userattrsBinary(t), "healthcheck", "--addr", "127.0.0.1:"+strconv.Itoa(port)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not ready") {
		t.Fatalf("healthcheck where nothing listens: %v %s", err, out)
	}
	v, err := exec.Command(userattrsBinary(t), "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	version := strings.TrimSpace(strings.TrimPrefix(string(v), "userattrs "))
	_, metrics := call(t, "GET", p.url+"/metrics", "", "")
	if !strings.Contains(metrics, `userattrs_build_info{goversion="go`) || !strings.Contains(metrics, `version="`+version+`"} 1`) {
		t.Fatalf("no userattrs_build_info with version %q in the metrics", version)
	}
}

// The operators' counters of the issuer's calls move: an issuer and an
// introspection endpoint that fail every call show as failed key-set
// fetches and failed introspections, not as successes.
func TestTokenCallMetrics(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer down.Close()
	p := startServe(t, t.TempDir(), nil, "--store", "memory:", "--oidc-issuer", down.URL, "--oidc-audience", "api",
		"--introspection-url", down.URL+"/introspect", "--introspection-client-id", "userattrs")
	want := []string{`userattrs_oidc_key_set_fetches_total{result="error"}`, `userattrs_introspections_total{result="error"}`}
	var metrics string
	for start := time.Now(); time.Since(start) < 20*time.Second; time.Sleep(200 * time.Millisecond) {
		// Readiness fetches the keys; an opaque token goes to introspection.
		call(t, "GET", p.url+"/health/readiness", "", "")
		call(t, "GET", p.url+"/user/2025-1/attributes", "an-opaque-token-of-the-test", "")
		_, metrics = call(t, "GET", p.url+"/metrics", "", "")
		if counted(metrics, want[0]) > 0 && counted(metrics, want[1]) > 0 {
			break
		}
	}
	for _, series := range want {
		if counted(metrics, series) == 0 {
			t.Errorf("%s did not count the failures", series)
		}
	}
	for _, series := range []string{`userattrs_oidc_key_set_fetches_total{result="ok"}`, `userattrs_introspections_total{result="active"}`} {
		if n := counted(metrics, series); n != 0 {
			t.Errorf("%s is %v with every call failing", series, n)
		}
	}
}

// counted is the value of series in a /metrics answer, 0 when absent.
func counted(metrics, series string) float64 {
	for _, line := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return n
		}
	}
	return 0
}
