package testutil

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The programs the tests and the benchmark run beside the service. Each
// must be a tool of go.mod, built from what go.mod and go.sum pin.
var wantTools = []string{
	"github.com/Shopify/toxiproxy/v2/cmd/server", // the fault proxy of the reliability tests
	"github.com/nats-io/nats-server/v2",          // the broker of the events tests, as a program
	"github.com/tsenart/vegeta/v12",              // the benchmark's load generator, as a program
}

// TestToolsBuildFromGoSum builds every tool that go.mod declares into an
// empty directory, with the go command's own checks of go.sum: a go.sum
// that lacks a line a tool needs fails here on every machine, not only on
// one whose caches never held that tool.
func TestToolsBuildFromGoSum(t *testing.T) {
	root := repoRoot(t)
	tools := declaredTools(t, root)
	for _, want := range wantTools {
		if !strings.Contains(" "+strings.Join(tools, " ")+" ", " "+want+" ") {
			t.Errorf("go.mod does not declare the tool %s (it declares %v)", want, tools)
		}
	}
	out := t.TempDir()
	if msg, err := goCommand(root, "build", "-o", out+string(filepath.Separator), "tool"); err != nil {
		t.Fatalf("go build tool: %v\n%s", err, msg)
	}
	for _, tool := range tools {
		if _, err := os.Stat(filepath.Join(out, toolName(tool))); err != nil {
			t.Errorf("tool %s was not built: %v", tool, err)
		}
	}
}

// TestToolsBuildNeedsEveryGoSumLine shows that the check above can fail: the
// same build, from a go.sum without the lines of a module only a tool
// needs (zerolog, which toxiproxy-server logs with), is refused.
func TestToolsBuildNeedsEveryGoSumLine(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	const dropped = "github.com/rs/zerolog "
	var kept []byte
	for _, line := range bytes.SplitAfter(sum, []byte("\n")) {
		if !bytes.HasPrefix(line, []byte(dropped)) {
			kept = append(kept, line...)
		}
	}
	if len(kept) == len(sum) {
		t.Fatalf("go.sum has no line for %s: the tools no longer need it, pick another module", dropped)
	}
	// -modfile reads go.sum from beside the go.mod it names.
	modfile := filepath.Join(dir, "go.mod")
	if err := os.WriteFile(modfile, mod, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), kept, 0o644); err != nil {
		t.Fatal(err)
	}
	msg, err := goCommand(root, "build", "-modfile="+modfile, "-o", t.TempDir()+string(filepath.Separator), "tool")
	if err == nil || !strings.Contains(msg, "missing go.sum entry") {
		t.Fatalf("a build without go.sum's %s lines: err %v, output\n%s", strings.TrimSpace(dropped), err, msg)
	}
}

// goCommand runs the go command in dir with the module checks a new
// machine gets: go.mod and go.sum read-only, whatever GOFLAGS says here.
func goCommand(dir string, args ...string) (string, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// declaredTools returns the tool directives of go.mod.
func declaredTools(t *testing.T, root string) []string {
	t.Helper()
	out, err := exec.Command("go", "mod", "edit", "-json", filepath.Join(root, "go.mod")).Output()
	if err != nil {
		t.Fatalf("go mod edit -json: %v", err)
	}
	var mod struct{ Tool []struct{ Path string } }
	if err := json.Unmarshal(out, &mod); err != nil {
		t.Fatal(err)
	}
	var tools []string
	for _, tool := range mod.Tool {
		tools = append(tools, tool.Path)
	}
	return tools
}

// majorVersion is a module path's last element when it is only a major
// version, which the go command leaves out of a binary's name.
var majorVersion = regexp.MustCompile(`^v[0-9]+$`)

// toolName is the file name go build gives the tool with import path p.
func toolName(p string) string {
	name := path.Base(p)
	if majorVersion.MatchString(name) {
		name = path.Base(path.Dir(p))
	}
	return name
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}
