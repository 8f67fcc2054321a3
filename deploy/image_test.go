package deploy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/userattrs/userattrs/internal/testutil"
)

// podman runs with runc: this machine's hybrid cgroups defeat crun, and it
// lacks CAP_SYS_RESOURCE, so the limits are set below its own.
var podmanRun = []string{"--runtime", "runc"}

// The image make image builds: the same sources give the same digest; it
// runs as non-root on a read-only root filesystem under podman, answers
// liveness, a PUT and a GET with a token minted inside the container,
// reports its version and passes its own healthcheck, and exits 0 on
// SIGTERM within the shutdown delay plus the drain.
func TestImage(t *testing.T) {
	podman, err := exec.LookPath("podman")
	if err != nil {
		t.Fatal("podman is missing: scripts/test-deps.sh installs it (Debian's podman and runc)")
	}
	version := fmt.Sprintf("test-%d", time.Now().UnixNano())
	build := func() string {
		cmd := exec.Command(filepath.Join(repoRoot(), "scripts", "image.sh"))
		cmd.Dir = repoRoot()
		cmd.Env = append(os.Environ(), "VERSION="+version)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("scripts/image.sh: %v\n%s", err, out)
		}
		_, digest, ok := strings.Cut(strings.TrimSpace(string(out)), "@sha256:")
		if !ok {
			t.Fatalf("scripts/image.sh printed no digest: %s", out)
		}
		return digest
	}
	first, second := build(), build()
	if first != second {
		t.Errorf("the same sources gave two digests: %s and %s", first, second)
	}
	tarball := filepath.Join(repoRoot(), "dist", "userattrs-image.tar")
	info, err := os.Stat(tarball)
	if err != nil {
		t.Fatal(err)
	}
	sbom, err := os.ReadFile(filepath.Join(repoRoot(), "dist", "userattrs-linux-amd64.spdx.json"))
	if err != nil || !strings.Contains(string(sbom), `"spdxVersion": "SPDX-2.3"`) {
		t.Errorf("no SPDX SBOM beside the image: %v", err)
	}
	t.Logf("image %s: %.1f MiB, sha256:%s", version, float64(info.Size())/(1<<20), first)

	image := "localhost/userattrs:" + version
	run(t, podman, "load", "-q", "-i", tarball)
	t.Cleanup(func() { runErr(podman, "rmi", "-f", image) })
	var config []struct {
		Config struct {
			User   string            `json:"User"`
			Labels map[string]string `json:"Labels"`
		} `json:"Config"`
	}
	if err := json.Unmarshal([]byte(run(t, podman, "image", "inspect", image)), &config); err != nil || len(config) != 1 {
		t.Fatalf("podman image inspect: %v", err)
	}
	if u := config[0].Config.User; u != "65532:65532" {
		t.Errorf("the image runs as %q, want the non-root 65532:65532", u)
	}
	if l := config[0].Config.Labels; l["org.opencontainers.image.version"] != version || l["org.opencontainers.image.title"] != "userattrs" || l["org.opencontainers.image.revision"] == "" {
		t.Errorf("OCI labels: %v", l)
	}

	port, err := testutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	name := "userattrs-" + version
	args := append(append([]string{}, podmanRun...), "run", "-d", "--name", name, "--read-only",
		"--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096", "-p", fmt.Sprintf("127.0.0.1:%d:8080", port),
		image, "serve", "--dev", "--addr", ":8080", "--data-dir", "/tmp/data", "--shutdown-delay", "2s", "--shutdown-timeout", "5s")
	run(t, podman, args...)
	t.Cleanup(func() { runErr(podman, "rm", "-f", name) })
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	ready := false
	for start := time.Now(); time.Since(start) < 30*time.Second; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(url + "/health/liveness"); err == nil {
			resp.Body.Close()
			if ready = resp.StatusCode == http.StatusOK; ready {
				break
			}
		}
	}
	if !ready {
		logs, _ := runErr(podman, "logs", name)
		t.Fatalf("the container never answered liveness:\n%s", logs)
	}
	inContainer := func(args ...string) string {
		return strings.TrimSpace(run(t, podman, append(append(append([]string{}, podmanRun...), "exec", name), args...)...))
	}
	token := inContainer("userattrs", "token", "--data-dir", "/tmp/data", "--sub", "image-user")
	attrs := url + "/user/2025-1/attributes"
	if status, body := do(t, "PUT", attrs, token, `{"tos_accepted":"true"}`); status != http.StatusNoContent {
		t.Fatalf("PUT: %d %s", status, body)
	}
	if status, body := do(t, "GET", attrs, token, ""); status != http.StatusOK || !strings.Contains(body, `"tos_accepted":"true"`) {
		t.Fatalf("GET: %d %s", status, body)
	}
	if got := inContainer("userattrs", "version"); !strings.Contains(got, version) {
		t.Errorf("userattrs version says %q, want %s", got, version)
	}
	inContainer("userattrs", "healthcheck", "--addr", "127.0.0.1:8080")
	if _, metrics := do(t, "GET", url+"/metrics", "", ""); !strings.Contains(metrics, `userattrs_build_info{goversion="go`) ||
		!strings.Contains(metrics, `version="`+version+`"`) {
		t.Errorf("/metrics has no userattrs_build_info of version %s", version)
	}
	// The root filesystem is read-only: only /tmp takes writes, even root's.
	if out, err := runErr(podman, append(append([]string{}, podmanRun...), "exec", "--user", "0", name,
		"userattrs", "migrate", "--store", "sqlite:/userattrs.db")...); err == nil || !strings.Contains(out, "read-only file system") {
		t.Errorf("a write outside /tmp succeeded on the read-only root filesystem: %s", out)
	}

	start := time.Now()
	run(t, podman, "stop", "-t", "30", name)
	took := time.Since(start)
	code := strings.TrimSpace(run(t, podman, "inspect", "--format", "{{.State.ExitCode}}", name))
	if code != "0" || took > 2*time.Second+5*time.Second+3*time.Second {
		logs, _ := runErr(podman, "logs", name)
		t.Errorf("on SIGTERM: exit code %s after %s, want 0 within the 2 s delay and the 5 s drain\n%s", code, took, logs)
	}
	t.Logf("stopped in %s with exit code %s", took.Round(time.Millisecond), code)
}
