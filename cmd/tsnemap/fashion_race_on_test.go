//go:build race

package main

// fashionUnderRace: the Fashion-MNIST quality test maps thousands of
// 784-value rows five times; under the race detector that is many minutes,
// and its figures are the plain build's.
const fashionUnderRace = true
