package kctest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/userattrs/userattrs/internal/testutil"
)

// keycloak.sh never reports ready for a Keycloak it did not start: a port
// something else holds is refused at once, and down then stops nothing.
func TestScriptRefusesABusyPort(t *testing.T) {
	root, err := testutil.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	free, err := testutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	busy := ln.Addr().(*net.TCPAddr).Port
	state := t.TempDir()
	for _, ports := range [][2]int{{busy, free}, {free, busy}} {
		var stderr bytes.Buffer
		cmd := exec.Command(filepath.Join(root, "scripts", "keycloak.sh"), "up")
		cmd.Env = append(os.Environ(), fmt.Sprintf("KEYCLOAK_PORT=%d", ports[0]),
			fmt.Sprintf("KEYCLOAK_MANAGEMENT_PORT=%d", ports[1]), "KEYCLOAK_STATE_DIR="+state)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err == nil || len(out) != 0 || !strings.Contains(stderr.String(), fmt.Sprintf("port %d is in use", busy)) {
			t.Fatalf("up on busy ports %v: %v, printed %q, said %q", ports, err, out, stderr.String())
		}
	}
	if _, err := os.Stat(filepath.Join(state, "pid")); err == nil {
		t.Fatal("up left a pid of a Keycloak it did not start")
	}
}
