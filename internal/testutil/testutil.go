// Package testutil holds helpers shared by the tests of several packages.
package testutil

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// SyncBuffer is a bytes.Buffer that a server's goroutines may write to while
// a test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// RepoRoot returns the directory of go.mod above the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Secrets collects what a test suite sends that must never be logged:
// tokens, client secrets and attribute values. Strings shorter than
// MinSecretBytes are not collected: "true" or "v" turn up in any log by
// chance, while a leak of real data shows with the longer values.
type Secrets struct {
	mu   sync.Mutex
	seen map[string]bool
}

// MinSecretBytes is the shortest string Secrets collects.
const MinSecretBytes = 8

// Add collects s.
func (s *Secrets) Add(values ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	for _, v := range values {
		if len(v) >= MinSecretBytes {
			s.seen[v] = true
		}
	}
}

// AddBody collects the string values of a JSON body's members.
func (s *Secrets) AddBody(body string) {
	var members map[string]any
	if json.Unmarshal([]byte(body), &members) != nil {
		return
	}
	for _, v := range members {
		switch v := v.(type) {
		case string:
			s.Add(v)
		case []any:
			for _, e := range v {
				if str, ok := e.(string); ok {
					s.Add(str)
				}
			}
		}
	}
}

// Leaks returns the collected strings that logs hold, and how many were
// collected.
func (s *Secrets) Leaks(logs string) (leaked []string, collected int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for v := range s.seen {
		if strings.Contains(logs, v) {
			leaked = append(leaked, v)
		}
	}
	return leaked, len(s.seen)
}

// LogScan is what a test suite logged and what it sent that must never be
// logged: its TestMain ends with os.Exit(scan.Check(m.Run())).
type LogScan struct {
	Logs    SyncBuffer
	Secrets Secrets
}

// Check returns the suite's exit code: code, unless the logs hold a
// collected secret (each reported), or, when the whole suite ran (no
// -run), too little was collected or logged for the scan to mean anything.
func (l *LogScan) Check(code int) int {
	if code != 0 || benchmarking() {
		return code
	}
	logs := l.Logs.String()
	leaked, collected := l.Secrets.Leaks(logs)
	switch {
	case len(leaked) > 0:
		for _, v := range leaked {
			fmt.Fprintf(os.Stderr, "FAIL: a token, secret or attribute value sent by the tests was logged (%d bytes, starting %.4q)\n", len(v), v)
		}
		return 1
	case (collected < 10 || len(logs) < 1000) && wholeSuite():
		fmt.Fprintf(os.Stderr, "FAIL: the log scan collected %d secrets and %d bytes of logs: too little to check\n", collected, len(logs))
		return 1
	}
	fmt.Fprintf(os.Stderr, "log scan: %d tokens, secrets and attribute values sent, %d bytes logged, none found in the logs\n", collected, len(logs))
	return 0
}

// Writer is where the suite's services log: the scanned buffer, or nowhere
// when the binary runs benchmarks, whose millions of requests would only
// fill memory (Check then skips the scan).
func (l *LogScan) Writer() io.Writer {
	if benchmarking() {
		return io.Discard
	}
	return &l.Logs
}

func benchmarking() bool {
	f := flag.Lookup("test.bench")
	return f != nil && f.Value.String() != ""
}

// wholeSuite reports whether the test binary runs every test (no -run).
func wholeSuite() bool {
	f := flag.Lookup("test.run")
	return f == nil || f.Value.String() == ""
}

// FilesHolding returns, for each of values, the files under dir whose
// bytes hold it: where an erased value would still be readable.
func FilesHolding(dir string, values []string) (map[string][]string, error) {
	found := map[string][]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, v := range values {
			if bytes.Contains(b, []byte(v)) {
				found[v] = append(found[v], path)
			}
		}
		return nil
	})
	return found, err
}
