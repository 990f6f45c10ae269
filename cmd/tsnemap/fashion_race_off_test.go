//go:build !race

package main

const fashionUnderRace = false
