package web

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/notify"
)

// Live updates are coalesced: the first change refreshes an inbox at once,
// and the changes that follow within inboxDebounce of a refresh refresh it
// once more at the window's end, so a burst of decisions costs an open inbox
// at most ten refreshes a second, never one per decision, and a lone new
// request shows without waiting for a window. The window is short because
// under a steady flow of requests a new one waits for the window under way:
// 100 ms keeps a request's way to an open inbox within 200 ms (issue 11,
// docs/BENCHMARKS.md). The runs list, which no target bounds, refreshes at
// most once per runsDebounce.
const (
	inboxDebounce = 100 * time.Millisecond
	runsDebounce  = 250 * time.Millisecond
)

// handleEvents handles the "GET /events" route: a server-sent event stream
// fed by the process's one LISTEN connection. It sends "inbox" when requests
// are created or decided, and "run-<id>" when that run changes status.
func (s *Server) handleEvents(c echo.Context) error {
	w := c.Response()
	// The server's write timeout bounds ordinary responses; a stream is
	// meant to stay open, and ends with its session instead.
	if err := http.NewResponseController(w).SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return fmt.Errorf("lift the stream's write deadline: %w", err)
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// Elements refresh on "connected" too: whatever changed between the
	// page render and this stream opening is not lost.
	fmt.Fprint(w, "event: connected\ndata: connected\n\n")
	w.Flush()

	msgs, stop := s.Notify.Subscribe(256)
	defer stop()
	ctx := c.Request().Context()
	ping := time.NewTicker(s.KeepAlive)
	defer ping.Stop()
	var inbox, runs <-chan time.Time // refreshes due at the end of their windows
	var lastInbox time.Time          // when the last inbox refresh was sent
	send := func(event string) error {
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, event); err != nil {
			return err
		}
		w.Flush()
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ping.C:
			// A stream outlives the request that checked the session: end it
			// once the session ends (logout, disable, idle or age limit).
			if u, _ := s.sessionUser(c, false); u == nil {
				return nil
			}
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return nil
			}
			w.Flush()
		case <-inbox:
			inbox = nil
			lastInbox = time.Now()
			if send("inbox") != nil {
				return nil
			}
		case <-runs:
			runs = nil
			if send("runs") != nil {
				return nil
			}
		case m := <-msgs:
			switch m.Type {
			case "request", "decision", "batch", notify.KindClaim, notify.Connected:
				if inbox == nil {
					if wait := inboxDebounce - time.Since(lastInbox); wait > 0 {
						inbox = time.After(wait)
					} else {
						lastInbox = time.Now()
						if send("inbox") != nil {
							return nil
						}
					}
				}
			}
			id := m.RunID
			if m.Type == "run" {
				id = m.ID
			}
			// The runs list refreshes at most once a debounce for any
			// number of changed runs.
			if (id != "" || m.Type == notify.Connected) && runs == nil {
				runs = time.After(runsDebounce)
			}
			if id != "" && send("run-"+id) != nil {
				return nil
			}
		}
	}
}
