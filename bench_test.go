package userattrs_test

import (
	"fmt"
	"testing"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store"
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

// BenchmarkMergeSized is the domain's part of a merge of one attribute
// into users of 2, 20 and 100: whether it changes anything, the merged
// copy and the store's check of it, without a store.
func BenchmarkMergeSized(b *testing.B) {
	for _, n := range []int{2, 20, 100} {
		b.Run(fmt.Sprintf("attrs=%d", n), func(b *testing.B) {
			current := userattrs.Attributes{}
			for i := range n {
				current[fmt.Sprintf("onboarding_step_%04d", i)] = []string{fmt.Sprintf("completed-%06d", i)}
			}
			patch := userattrs.Patch{{Key: "onboarding_step_0000", Values: []string{"again"}, BadIndex: -1}}
			b.ReportAllocs()
			for b.Loop() {
				if !patch.Changes(current) {
					b.Fatal("no change")
				}
				next := patch.Merged(current)
				if _, changed, err := store.Next(current, func(userattrs.Attributes) (userattrs.Attributes, error) { return next, nil }); err != nil || !changed {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkETag(b *testing.B) {
	a := userattrs.Attributes{"referred": {"false"}, "tos_accepted": {"true"}, "onboarding": {"welcome", "profile", "done"}}
	b.ReportAllocs()
	for b.Loop() {
		a.ETag()
	}
}
