//go:build race

package egress

// raceEnabled: the race detector slows heavy tests several times.
const raceEnabled = true
