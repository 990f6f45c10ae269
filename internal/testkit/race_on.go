//go:build race

package testkit

// Race is true in a test binary built with the race detector, which runs
// code several times slower and with more memory: tests shrink their
// inputs under it, and the time and memory bounds of some hold only for
// plain builds.
const Race = true
