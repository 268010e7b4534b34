package web

import "time"

// SetKeepAlive shortens the SSE keep-alive for a test and returns a restore.
func SetKeepAlive(d time.Duration) func() {
	old := keepAlive
	keepAlive = d
	return func() { keepAlive = old }
}
