//go:build !race

package policy

// raceSlowdown scales the time bounds of tests that measure CPU; see
// race_on_test.go.
const raceSlowdown = 1
