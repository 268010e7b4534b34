//go:build !race

package policystore_test

// raceSlowdown scales the time bounds of tests that measure CPU; see
// race_on_test.go.
const raceSlowdown = 1
