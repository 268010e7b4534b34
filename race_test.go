//go:build race

package countersign_test

// raceEnabled: the tests were built with -race, so the example is too, and
// its build reuses the packages this test binary's build compiled.
const raceEnabled = true
