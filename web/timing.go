package web

import (
	"fmt"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// serverTiming collects the phases of one response for its Server-Timing
// header (W3C Server Timing), which the browser shows in its developer
// tools and hands to scripts as PerformanceResourceTiming.serverTiming:
// the review page and the decision POST carry it, so that a reviewer's
// time per decision splits into the server's part (deciding, loading the
// next request, rendering it) and the browser's. It says how long, never
// what: no names, ids or data.
type serverTiming struct {
	start time.Time
	parts []string
}

const (
	timingKey   = "server-timing"
	receivedKey = "received"
)

// startTiming starts timing the current response from when the server
// received it (headers notes it, first of the middleware), the first phase,
// "auth", being the middleware's: the session, the user, the CSRF check.
// render adds its own phase and the total, and writes the header.
func startTiming(c echo.Context) *serverTiming {
	t := &serverTiming{start: time.Now()}
	if at, ok := c.Get(receivedKey).(time.Time); ok {
		t.start = at
		t.add("auth", at)
	}
	c.Set(timingKey, t)
	return t
}

// add records the phase name as lasting since from.
func (t *serverTiming) add(name string, from time.Time) {
	t.parts = append(t.parts, fmt.Sprintf("%s;dur=%.1f", name, float64(time.Since(from).Microseconds())/1000))
}

// write sets the header with the phases so far and the total.
func (t *serverTiming) write(c echo.Context) {
	t.add("total", t.start)
	c.Response().Header().Set("Server-Timing", strings.Join(t.parts, ", "))
}

// timingOf is the current response's timing, or nil when it is not timed.
func timingOf(c echo.Context) *serverTiming {
	t, _ := c.Get(timingKey).(*serverTiming)
	return t
}
