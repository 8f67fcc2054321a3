package memory_test

import (
	"testing"

	"github.com/rs/xid"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store/conformance"
	"github.com/userattrs/userattrs/store/memory"
)

// The reference store passes every part of the suite: the contract, the
// history with its bounds, and the outbox.
func TestConformance(t *testing.T) {
	newUser := func(*testing.T) string { return xid.New().String() }
	conformance.RunTests(t, func(t *testing.T) conformance.Harness {
		return conformance.Harness{
			Store:   memory.Open(memory.Config{Events: true, HistoryBounds: userattrs.DefaultHistoryBounds}),
			NewUser: newUser,
			Bounded: func(t *testing.T, bounds userattrs.HistoryBounds) userattrs.Store {
				return memory.Open(memory.Config{HistoryBounds: bounds, Events: true})
			},
		}
	})
}
