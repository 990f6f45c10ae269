//go:build race

package cpu

// raceEnabled shrinks the approximate-search tests under the race detector,
// which runs them about ten times slower.
const raceEnabled = true
