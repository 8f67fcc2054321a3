package userattrs_test

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// The README stays short, and every relative link of it and of docs/
// resolves: to a file, and to a heading of a Markdown file.
func TestDocsLinks(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(readme), "\n"); n > 250 {
		t.Errorf("README.md has %d lines; at most 250, the rest goes in docs/", n)
	}
	pages, _ := filepath.Glob("docs/*.md")
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, page := range append(pages, "README.md") {
		text, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(text), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			if file == "" {
				file = page
			} else {
				file = filepath.Join(filepath.Dir(page), file)
			}
			if _, err := os.Stat(file); err != nil {
				t.Errorf("%s: link %s: %v", page, target, err)
				continue
			}
			if anchor != "" && !slices.Contains(anchors(t, file), anchor) {
				t.Errorf("%s: link %s: no heading #%s in %s", page, target, anchor, file)
			}
		}
	}
}

// anchors returns the anchors GitHub gives the headings of a Markdown file.
func anchors(t *testing.T, file string) []string {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	fenced := false
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		}
		if fenced || !strings.HasPrefix(line, "#") {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#"))) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		out = append(out, b.String())
	}
	return out
}

// The layout in docs/development.md names what the tree holds: every path
// it names exists, and every directory and Go file at the top of the
// tree, and every package under store/ and internal/, is named.
func TestDocsLayoutMatchesTree(t *testing.T) {
	text, err := os.ReadFile("docs/development.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(text), "```\n")
	block, _, _ := strings.Cut(rest, "```")
	named := map[string]bool{}
	for line := range strings.Lines(block) {
		// The first column: paths, or names of internal/ packages after
		// the first of a group.
		first, _, _ := strings.Cut(line, "   ")
		dir := ""
		for i, f := range strings.Fields(first) {
			f = strings.TrimSuffix(f, "/")
			if i == 0 {
				dir = filepath.Dir(f)
			} else if !strings.Contains(f, "/") && dir != "." {
				f = filepath.Join(dir, f)
			}
			if _, err := os.Stat(f); err != nil {
				t.Errorf("the layout names %s, which the tree does not hold", f)
			}
			named[f] = true
		}
	}
	var want []string
	top, _ := os.ReadDir(".")
	for _, e := range top {
		name := e.Name()
		switch {
		case e.IsDir() && (!strings.HasPrefix(name, ".") || name == ".ci") && name != "results" && name != "data" && name != "dist" && name != "bin":
			if name == "store" || name == "internal" {
				sub, _ := os.ReadDir(name)
				for _, s := range sub {
					want = append(want, filepath.Join(name, strings.TrimSuffix(s.Name(), "/")))
				}
				continue
			}
			want = append(want, name)
		case strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go"):
			want = append(want, name)
		}
	}
	for _, w := range want {
		covered := named[w]
		for n := range named {
			if strings.HasPrefix(n, w+"/") {
				covered = true
			}
		}
		if !covered {
			t.Errorf("the layout in docs/development.md leaves out %s", w)
		}
	}
}

// No Go file but a test is over 500 lines: a longer one does several jobs.
func TestFilesDoOneJob(t *testing.T) {
	filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != "." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		text, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(text), "\n"); n > 500 {
			t.Errorf("%s has %d lines; split it by job", path, n)
		}
		return nil
	})
}
