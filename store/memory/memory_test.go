package memory_test

import (
	"testing"

	"github.com/rs/xid"

	"github.com/userattrs/userattrs/store/conformance"
	"github.com/userattrs/userattrs/store/memory"
)

func TestConformance(t *testing.T) {
	conformance.RunTests(t, func(t *testing.T) conformance.Harness {
		return conformance.Harness{Store: memory.New(), NewUser: func(*testing.T) string { return xid.New().String() }}
	})
}
