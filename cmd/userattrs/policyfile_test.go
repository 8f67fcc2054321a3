package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/userattrs/userattrs"
)

// serve refuses to start with a broken policy file, with one line naming
// the file, the rule and the problem.
func TestAttributePolicyRefusedAtStart(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.yaml")
	os.WriteFile(file, []byte("attributes:\n  - match: phone\n    pattern: \"[0-9\"\n"), 0o600)
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"serve", "--dev", "--data-dir", dir, "--addr", "127.0.0.1:0", "--attribute-policy", file},
		func(string) string { return "" }, &stderr, &stderr)
	var usage usageError
	if !errors.As(err, &usage) || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), `rule 1 (match "phone"): pattern`) ||
		strings.Contains(err.Error(), "\n") {
		t.Fatalf("a broken file at start: %v", err)
	}
}

// SIGHUP reloads the file: a good one is in force at once, and the metric
// names its version; a broken one is refused with an ERROR line, and the
// policy in force stays.
func TestAttributePolicyReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.yaml")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("attributes:\n  - match: tos_accepted\n    enum: [\"true\", \"false\"]\n")
	p := startServe(t, dir, nil, "--dev", "--data-dir", dir, "--attribute-policy", file)
	tok := mintToken(t, dir, "--sub", "alice", "--data-dir", dir)
	put := func(body string) int {
		status, _ := call(t, "PUT", p.url+"/user/2024-3/attributes", tok, body, "Content-Type", "application/json")
		return status
	}
	version := func() string {
		_, body := call(t, "GET", p.url+"/metrics", "", "")
		for line := range strings.Lines(body) {
			if v, ok := strings.CutPrefix(line, `userattrs_attribute_policy_info{version="`); ok {
				return v[:strings.Index(v, `"`)]
			}
		}
		return ""
	}
	first := version()
	if put(`{"tos_accepted":"maybe"}`) != 422 || put(`{"plan":"pro"}`) != 204 || len(first) != 12 {
		t.Fatalf("the first file: version %q", first)
	}
	hangup := func() {
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s within 10s\n%s", what, p.logs.String())
			}
		}
	}

	write("attributes:\n  - match: tos_accepted\n    enum: [\"true\", \"false\", \"maybe\"]\n  - match: plan\n    write: []\n")
	hangup()
	waitFor("the new file in force", func() bool { return version() != first })
	second := version()
	if put(`{"tos_accepted":"maybe"}`) != 204 || put(`{"plan":"team"}`) != 403 {
		t.Fatal("the reloaded file is not what is enforced")
	}

	write("attributes:\n  - match: plan\n    colour: red\n")
	hangup()
	waitFor("the refusal logged", func() bool {
		return strings.Contains(p.logs.String(), `"level":"ERROR","msg":"attribute policy: the file was not reloaded`)
	})
	if !strings.Contains(p.logs.String(), `rule 1 (match \"plan\"): json: unknown field \"colour\"`) || version() != second ||
		put(`{"plan":"team"}`) != 403 || put(`{"tos_accepted":"maybe"}`) != 204 {
		t.Fatalf("after a broken file: version %q (want %q)\n%s", version(), second, p.logs.String())
	}
	if metric(t, p, `userattrs_attribute_policy_reloads_total{result="applied"}`) != 1 ||
		metric(t, p, `userattrs_attribute_policy_reloads_total{result="refused"}`) != 1 {
		t.Fatal("the reload metrics")
	}
}

// The published JSON Schema of the file and the service agree on the
// documentation's examples, as check-jsonschema (from PyPI) reads the
// schema: each example passes both, and a file with an unknown key, or a
// rule without match, fails both.
func TestAttributePolicySchema(t *testing.T) {
	tools := clientTools(t)
	doc, err := os.ReadFile("../../docs/attribute-policy.md")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var examples []string
	for i, block := range strings.Split(string(doc), "```yaml\n")[1:] {
		example := block[:strings.Index(block, "```")]
		if !strings.HasPrefix(example, "attributes:") {
			continue
		}
		path := filepath.Join(dir, fmt.Sprintf("example-%d.yaml", i))
		os.WriteFile(path, []byte(example), 0o600)
		examples = append(examples, path)
		if _, err := userattrs.ParseAttributeRules([]byte(example), userattrs.DefaultLimits); err != nil {
			t.Errorf("the service refuses %s: %v\n%s", path, err, example)
		}
	}
	if len(examples) < 4 {
		t.Fatalf("%d examples in docs/attribute-policy.md", len(examples))
	}
	check := func(files ...string) error {
		cmd := exec.Command(tools["CLIENTS_CHECK_JSONSCHEMA"], append([]string{"--schemafile", "../../api/attribute-policy.schema.json"}, files...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}
	if err := check(examples...); err != nil {
		t.Fatalf("check-jsonschema refuses the documentation's examples: %v", err)
	}
	for _, bad := range []string{"attributes:\n  - match: x\n    colour: red\n", "attributes:\n  - enum: [a]\n",
		"attributes:\n  - match: x\n    max_values: 0\n"} {
		path := filepath.Join(dir, "bad.yaml")
		os.WriteFile(path, []byte(bad), 0o600)
		if check(path) == nil {
			t.Errorf("check-jsonschema takes %q", bad)
		}
		if _, err := userattrs.ParseAttributeRules([]byte(bad), userattrs.DefaultLimits); err == nil {
			t.Errorf("the service takes %q", bad)
		}
	}
}
