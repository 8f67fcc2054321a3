package userattrs

import (
	"sync"
	"testing"
)

// A view computes its body once however many readers ask at once, and its
// tag is the attributes' own.
func TestViewComputesOnce(t *testing.T) {
	attrs := Attributes{"a": {"1"}, "b": {"2", "3"}}
	v := &View{attrs: attrs}
	encodes := 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if body := v.Body(func(Attributes) []byte { encodes++; return []byte("body") }); string(body) != "body" {
				t.Errorf("body %q", body)
			}
		})
	}
	wg.Wait()
	if encodes != 1 {
		t.Fatalf("encoded %d times, want once", encodes)
	}
	if v.ETag() != attrs.ETag() {
		t.Fatalf("the view's tag %s is not its attributes' %s", v.ETag(), attrs.ETag())
	}
}
