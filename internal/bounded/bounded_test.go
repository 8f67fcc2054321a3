package bounded

import (
	"strconv"
	"testing"
)

// The map never holds more than its bounds, counts exactly what it holds,
// and keeps what fits.
func TestBounds(t *testing.T) {
	m := New[int](10, 100)
	for i := range 1000 {
		m.Put(strconv.Itoa(i%37), i, 1+i%30)
		sum := 0
		for _, e := range m.entries {
			sum += e.size
		}
		if m.Len() > 10 || m.Bytes() > 100 || sum != m.Bytes() {
			t.Fatalf("after %d puts: %d entries, %d bytes counted, %d held", i+1, m.Len(), m.Bytes(), sum)
		}
		if v, ok := m.Get(strconv.Itoa(i % 37)); !ok || v != i {
			t.Fatalf("the value just put is %d, %v", v, ok)
		}
	}
	m.Put("huge", 1, 101)
	if _, ok := m.Get("huge"); ok {
		t.Fatal("a value larger than the bound was kept")
	}
	m.Put("a", 1, 5)
	m.Put("a", 2, 101)
	if _, ok := m.Get("a"); ok {
		t.Fatal("an older value stayed when the new one did not fit")
	}
	m.Remove("missing")
	if m.Bytes() < 0 {
		t.Fatal("removing a missing key changed the count")
	}
}
