package server

import (
	"strings"

	"github.com/userattrs/userattrs"
)

// entityTagList is a parsed If-Match or If-None-Match field (RFC 9110,
// 13.1.1 and 13.1.2): "*", or a list of entity tags.
type entityTagList struct {
	any    bool
	strong []string // quoted
	weak   []string // quoted, without W/
	ok     bool     // the fields are well formed
}

// parseEntityTags parses the values of one of the fields as RFC 9110
// writes them: "*" alone, or a comma-separated list of entity tags, in
// which empty elements are allowed. Anything else makes the whole list
// malformed; so does a field with no element at all.
func parseEntityTags(values []string) entityTagList {
	l := entityTagList{ok: true}
	elements := 0
	for _, v := range values {
		for {
			v = strings.TrimLeft(v, " \t")
			if v == "" {
				break
			}
			if v[0] == ',' {
				v = v[1:]
				continue
			}
			elements++
			if v[0] == '*' {
				l.any = true
				v = v[1:]
			} else {
				weak := strings.HasPrefix(v, "W/")
				if weak {
					v = v[2:]
				}
				end := -1
				if strings.HasPrefix(v, `"`) {
					end = strings.IndexByte(v[1:], '"')
				}
				if end < 0 {
					return entityTagList{}
				}
				if weak {
					l.weak = append(l.weak, v[:end+2])
				} else {
					l.strong = append(l.strong, v[:end+2])
				}
				v = v[end+2:]
			}
			if v = strings.TrimLeft(v, " \t"); v != "" && v[0] != ',' {
				return entityTagList{}
			}
		}
	}
	if elements == 0 || (l.any && elements > 1) {
		return entityTagList{}
	}
	return l
}

// ifMatch is the precondition of a PUT's If-Match fields. If-Match compares
// strongly, so weak tags never match, and a malformed field holds for no
// representation (RFC 9110, 13.1.1: the condition is then false): a garbled
// condition never lets a write through.
func ifMatch(values []string) userattrs.Precondition {
	if len(values) == 0 {
		return userattrs.Precondition{}
	}
	l := parseEntityTags(values)
	return userattrs.IfMatch(l.ok && l.any, l.strong)
}

// noneMatch reports whether If-None-Match fields name etag, by the weak
// comparison RFC 9110 prescribes for them.
func noneMatch(values []string, etag string) bool {
	l := parseEntityTags(values)
	if !l.ok {
		return false
	}
	if l.any {
		return true
	}
	for _, tags := range [][]string{l.strong, l.weak} {
		for _, t := range tags {
			if t == etag {
				return true
			}
		}
	}
	return false
}
