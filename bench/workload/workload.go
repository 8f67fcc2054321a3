// Package workload is what the benchmark and its speed limit (bench/bare)
// agree on: the bodies of users of a given size.
package workload

import (
	"fmt"
	"strings"
)

// SizedBody is a user of n attributes (a 20-byte name, a 16-byte value
// each) as a PUT body, and as the GET body the service answers for them.
func SizedBody(n int) []byte {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"onboarding_step_%04d":"completed-%06d"`, i, i)
	}
	b.WriteString("}")
	return []byte(b.String())
}

// Sizes are the user sizes, in attributes, that the benchmark measures.
var Sizes = []int{2, 20, 100}

// SizeHeader asks the speed limit for the body of a user of that many
// attributes.
const SizeHeader = "X-Bench-Attributes"
