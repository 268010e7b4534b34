package account

// SetMaxFailedEvents lowers the bound on failed sign-in events for a test
// and returns a restore.
func SetMaxFailedEvents(n int) func() {
	old := maxFailedEvents
	maxFailedEvents = n
	return func() { maxFailedEvents = old }
}
