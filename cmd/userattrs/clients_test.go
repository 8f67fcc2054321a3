package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// clientTranscript is what every generated client prints for the steps of
// testdata/clients: PUT a plain string and a plain list, GET them back,
// remove one with null under the ETag just read, GET again, and a PUT with
// the now stale ETag, which the server refuses with 412.
const clientTranscript = `put-string "ok"
put-list "ok"
get {"langs":["de","en"],"theme":"dark"}
remove-if-match "ok"
get {"langs":["de","en"]}
stale-if-match 412
`

// clientTools runs scripts/client-tools.sh, which fetches the generator
// releases the tests use, a Python virtual environment and the TypeScript
// compiler, and returns what it exports. Without Java, Maven, Python or npm the test is skipped,
// except under CI=true, where it fails.
func clientTools(t *testing.T) map[string]string {
	t.Helper()
	for _, tool := range []string{"java", "mvn", "python3", "npm", "node"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is needed to generate and run clients", tool)
			}
			t.Skipf("%s is needed to generate and run clients", tool)
		}
	}
	var stderr bytes.Buffer
	cmd := exec.Command("../../scripts/client-tools.sh")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client-tools.sh: %v\n%s", err, stderr.String())
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if name, value, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "="); ok {
			env[name] = strings.Trim(value, `"`)
		}
	}
	return env
}

// runTool runs a command in dir and fails the test with its output if it
// fails; it returns standard output.
func runTool(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s\n%s", filepath.Base(name), strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// Teams without a PACE SDK generate a client from api/openapi.yaml: the
// Python, TypeScript and Go clients of each tested generator release write
// plain values, remove with null and make conditional writes with the ETag
// they read, against serve --dev, as an app developer would use them.
func TestGeneratedClients(t *testing.T) {
	tools := clientTools(t)
	versions := strings.Fields(tools["OPENAPI_GENERATOR_VERSIONS"])
	jars := strings.Fields(tools["OPENAPI_GENERATOR_JARS"])
	if len(versions) == 0 || len(jars) != len(versions) {
		t.Fatalf("client-tools.sh exported versions %q and jars %q", versions, jars)
	}
	spec, err := filepath.Abs("../../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	clients, err := filepath.Abs("testdata/clients")
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	p := startServe(t, dataDir, nil, "--dev", "--data-dir", dataDir)

	languages := []struct {
		generator string
		options   string
		run       func(t *testing.T, generated string, env []string) string
	}{
		{"python", "packageName=userattrs_client", func(t *testing.T, generated string, env []string) string {
			python := tools["CLIENTS_PYTHON"]
			runTool(t, generated, nil, python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", "requirements.txt")
			return runTool(t, generated, append(env, "PYTHONPATH="+generated), python, filepath.Join(clients, "app.py"))
		}},
		{"typescript-fetch", "supportsES6=true", func(t *testing.T, generated string, env []string) string {
			work := filepath.Dir(generated) // generated is work/client
			copyFile(t, filepath.Join(clients, "app.ts"), filepath.Join(work, "app.ts"))
			runTool(t, work, nil, tools["CLIENTS_TSC"], "--strict", "--target", "es2020", "--module", "commonjs",
				"--lib", "es2020,dom", "--outDir", "out", "app.ts")
			return runTool(t, work, env, "node", filepath.Join("out", "app.js"))
		}},
		{"go", "packageName=client,isGoSubmodule=false", func(t *testing.T, generated string, env []string) string {
			work := t.TempDir()
			copyFile(t, filepath.Join(clients, "go", "main.go"), filepath.Join(work, "main.go"))
			os.WriteFile(filepath.Join(work, "go.mod"), []byte("module clienttest\n\ngo 1.23\n\n"+
				"require github.com/userattrs/client v0.0.0\n\nreplace github.com/userattrs/client => "+generated+"\n"), 0o644)
			runTool(t, work, nil, "go", "mod", "tidy")
			return runTool(t, work, env, "go", "run", ".")
		}},
	}
	for i, version := range versions {
		for _, lang := range languages {
			t.Run(version+"/"+lang.generator, func(t *testing.T) {
				generated := filepath.Join(t.TempDir(), "client")
				runTool(t, "", nil, "java", "-jar", jars[i], "generate", "-g", lang.generator, "-i", spec, "-o", generated,
					"--git-user-id", "userattrs", "--git-repo-id", "client", "--additional-properties", lang.options)
				user := "client-" + strings.NewReplacer(".", "-", "/", "-").Replace(t.Name())
				env := []string{"USERATTRS_URL=" + p.url, "USERATTRS_VERSION=2024-2",
					"USERATTRS_TOKEN=" + mintToken(t, dataDir, "--sub", user, "--data-dir", dataDir)}
				if got := lang.run(t, generated, env); got != clientTranscript {
					t.Fatalf("the %s client printed\n%s\nwant\n%s", lang.generator, got, clientTranscript)
				}
			})
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The two linters teams run on the document find no error in it: with
// one, strict tools read it as it is meant (null where removal is allowed,
// for instance).
func TestOpenAPILinters(t *testing.T) {
	tools := clientTools(t)
	spec, err := filepath.Abs("../../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ".spectral.yaml"), []byte("extends: [\"spectral:oas\"]\n"), 0o644)
	for _, lint := range []struct {
		tool string
		args []string
	}{
		{tools["CLIENTS_REDOCLY"], []string{"lint", "--format=stylish", spec}},
		{tools["CLIENTS_SPECTRAL"], []string{"lint", "--fail-severity=error", spec}},
	} {
		cmd := exec.Command(lint.tool, lint.args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "REDOCLY_TELEMETRY=off", "REDOCLY_SUPPRESS_UPDATE_NOTICE=true")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", filepath.Base(lint.tool), err, out)
		}
	}
}

// An API fuzzer no one here wrote, driven by the OpenAPI document alone,
// finds no disagreement between the document and serve --dev: every check
// of schemathesis, with the two readings of api/schemathesis.toml.
func TestSchemathesis(t *testing.T) {
	tools := clientTools(t)
	dir := t.TempDir()
	// Every request writes one user, whose totals (256 attributes, 64 KiB)
	// then depend on what the fuzzer sent before: a state no schema can
	// state. They are raised here; the rules of a single request, which
	// the document states, stay at their defaults. A fuzzer sends bad
	// bodies on purpose: the budget of a user's refused requests would
	// answer most of them 429 unchecked.
	// Events go to a receiver that is never up, so that the parked
	// events' routes serve as they do in production.
	scan.Secrets.Add(webhookSecret)
	p := startServe(t, dir, []string{"USERATTRS_EVENTS_WEBHOOK_SECRET=" + webhookSecret}, "--dev", "--data-dir", dir,
		"--max-attributes", "1000000", "--max-user-bytes", "1000000000", "--rate-limit-refused-per-user", "0",
		"--events-webhook-url", "http://127.0.0.1:9/", "--events-park-attempts", "2")
	user := mintToken(t, dir, "--sub", "fuzzed", "--data-dir", dir)
	admin := mintToken(t, dir, "--sub", "backend", "--client", "backend", "--scope", "user:attributes:admin", "--data-dir", dir)
	root, _ := filepath.Abs("../..")
	// The self-service routes with a user's token, the admin routes with a
	// service account's: each as its callers call it.
	for _, run := range []struct{ paths, token string }{{"^/(user|health|metrics)", user}, {"^/admin/", admin}} {
		out := runTool(t, dir, []string{"SCHEMATHESIS_HOOKS=", "NO_COLOR=1"}, tools["CLIENTS_SCHEMATHESIS"],
			"--config-file", filepath.Join(root, "api", "schemathesis.toml"),
			"run", filepath.Join(root, "api", "openapi.yaml"), "--url", p.url, "--checks", "all",
			"--include-path-regex", run.paths, "--max-examples", "200", "-H", "Authorization: Bearer "+run.token)
		summary := out[max(0, strings.LastIndex(out, "SUMMARY")):]
		if !strings.Contains(summary, "passed") || strings.Contains(summary, "fail") {
			t.Fatalf("schemathesis on %s:\n%s", run.paths, summary)
		}
		t.Log(strings.TrimSpace(summary))
	}
}
