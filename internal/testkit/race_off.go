//go:build !race

package testkit

// Race is true in a test binary built with the race detector (see
// race_on.go).
const Race = false
