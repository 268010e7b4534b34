package web_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/demo"
)

// TestErrorPagesForPeople: an error page heads the status in words and
// gives the message as a sentence, without the error kind's prefix that the
// API keeps beside its code.
func TestErrorPagesForPeople(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	reviewer := c.client(t, "reviewer@example.com")

	doc, status := c.get(t, reviewer, "/runs/00000000-0000-0000-0000-000000000000")
	require.Equal(t, http.StatusNotFound, status)
	require.Equal(t, "Not found (404)", doc.Find("[data-testid=error-title]").Text())
	require.Equal(t, "Not found.", doc.Find("[data-testid=error-message]").Text())

	doc, status = c.get(t, reviewer, "/history?tier=bogus")
	require.Equal(t, http.StatusBadRequest, status)
	require.Equal(t, "That cannot be done (400)", doc.Find("[data-testid=error-title]").Text())
	require.Equal(t, "Tier must be auto, batched or explicit.", doc.Find("[data-testid=error-message]").Text())

	// A domain error's kind ("invalid input: ") is the API's, not the page's.
	_, req := c.startRun(t, "support_triage", "E-1", demo.Ticket{ID: "E-1", Customer: "a@example.com", Subject: "How do I login?", Body: "password"}, "api@example.com")
	resp, body := c.post(t, reviewer, "/requests/"+req.ID, "/requests/"+req.ID+"/decision",
		url.Values{"verdict": {"maybe"}, "payload_hash": {req.PayloadHash}})
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
	require.Contains(t, body, "Unknown verdict")
	require.NotContains(t, body, "invalid input")
	api := c.api(t, "reviewer@example.com")
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	require.Equal(t, http.StatusUnprocessableEntity, api.do("POST", "/requests/"+req.ID+"/decision",
		map[string]any{"verdict": "maybe", "payload_hash": req.PayloadHash}, &e))
	require.Equal(t, "invalid", e.Error.Code)
	require.Contains(t, e.Error.Message, "invalid input: ", "the API's message is unchanged")
}
