//go:build race

package policy

// raceSlowdown scales the time bounds of tests that measure CPU: the race
// detector slows CEL's cost tracking about twentyfold, and the bounds are
// about the production binary.
const raceSlowdown = 20
