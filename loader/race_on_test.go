//go:build race

package loader

// raceEnabled: the race detector slows and fattens allocation-heavy tests
// several times over; their time and memory bounds hold for plain builds.
const raceEnabled = true
