package web

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
