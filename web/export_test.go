package web

import "time"

// HoldSimulations takes every simulation slot, as that many running
// simulations would, and returns their release.
func HoldSimulations() (release func()) {
	for range maxSimulations {
		simulations <- struct{}{}
	}
	return func() {
		for range maxSimulations {
			<-simulations
		}
	}
}

// HoldRuleStats takes every rule statistics slot and returns their release.
func HoldRuleStats() (release func()) {
	for range maxRuleStats {
		ruleStats <- struct{}{}
	}
	return func() {
		for range maxRuleStats {
			<-ruleStats
		}
	}
}

// SetSimulationTimeout shortens a simulation's time limit for a test and
// returns a restore.
func SetSimulationTimeout(d time.Duration) func() {
	old := simulationTimeout
	simulationTimeout = d
	return func() { simulationTimeout = old }
}

// ParseWait reads a long poll's wait parameter.
var ParseWait = parseWait

// SafeNext is the sign-in redirect's check of its "next" path.
var SafeNext = safeReturn
