package userattrs_test

import (
	"testing"

	"github.com/userattrs/userattrs"
)

func BenchmarkMerge(b *testing.B) {
	current := userattrs.Attributes{"a": {"1"}, "b": {"2"}, "tos_accepted": {"false"}, "langs": {"de", "en"}}
	patch := userattrs.Patch{
		{Key: "tos_accepted", Values: []string{"true"}, BadIndex: -1},
		{Key: "referred", Values: []string{"false"}, BadIndex: -1},
		{Key: "a", BadIndex: -1},
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := userattrs.DefaultLimits.Validate(patch); err != nil {
			b.Fatal(err)
		}
		next := current.Clone()
		patch.ApplyTo(next)
	}
}

func BenchmarkETag(b *testing.B) {
	a := userattrs.Attributes{"referred": {"false"}, "tos_accepted": {"true"}, "onboarding": {"welcome", "profile", "done"}}
	b.ReportAllocs()
	for b.Loop() {
		a.ETag()
	}
}
