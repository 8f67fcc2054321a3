package server

import (
	"testing"

	"github.com/userattrs/userattrs"
)

var published = []byte(`{"referred":"false","tos_accepted":"true","onboarding":["welcome","profile","done"]}`)

func BenchmarkDecodePatch(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		p, err := decodePatch(published)
		if err != nil || userattrs.DefaultLimits.Validate(p) != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeAttributes(b *testing.B) {
	attrs := userattrs.Attributes{"referred": {"false"}, "tos_accepted": {"true"}, "onboarding": {"welcome", "profile", "done"}}
	b.ReportAllocs()
	for b.Loop() {
		encodeAttributes(attrs)
	}
}
