//go:build !race

package cpu

const approxRaceEnabled = false
