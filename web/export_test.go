package web

import "time"

// SetKeepAlive shortens the SSE keep-alive for a test and returns a restore.
func SetKeepAlive(d time.Duration) func() {
	old := keepAlive
	keepAlive = d
	return func() { keepAlive = old }
}

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

// SetSimulationTimeout shortens a simulation's time limit for a test and
// returns a restore.
func SetSimulationTimeout(d time.Duration) func() {
	old := simulationTimeout
	simulationTimeout = d
	return func() { simulationTimeout = old }
}
