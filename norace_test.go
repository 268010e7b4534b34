//go:build !race

package countersign_test

// raceEnabled: the tests were built without -race.
const raceEnabled = false
