//go:build race

package cpu

// approxRaceEnabled shrinks the approximate-search tests under the race detector,
// which runs them about ten times slower.
const approxRaceEnabled = true
