package main

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

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
