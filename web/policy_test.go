package web_test

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/web"
)

const everythingExplicit = "version: 1\nrules:\n  - name: everything-explicit\n    when: 'true'\n    tier: explicit\n"

func TestPolicySimulationIsForApproversAndAdmins(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	form := url.Values{"candidate": {everythingExplicit}, "since": {"24h"}}

	for _, tc := range []struct {
		email  string
		status int
	}{
		{"viewer@example.com", http.StatusForbidden},
		{"reviewer@example.com", http.StatusForbidden},
		{"approver@example.com", http.StatusOK},
		{"admin@example.com", http.StatusOK},
	} {
		t.Run(tc.email, func(t *testing.T) {
			hc := c.client(t, tc.email)
			doc, _ := c.get(t, hc, "/policy")
			allowed := tc.status == http.StatusOK
			require.Equal(t, allowed, doc.Find(`[data-testid=simulate-form]`).Length() == 1, "the form is shown only to those who may use it")
			require.Equal(t, !allowed, doc.Find(`[data-testid=simulate-denied]`).Length() == 1)
			resp, body := c.post(t, hc, "/policy", "/policy/simulate", form)
			require.Equal(t, tc.status, resp.StatusCode)
			if !allowed {
				require.Contains(t, body, "only approvers and admins may simulate a policy")
				require.NotContains(t, body, `data-testid="simulation"`)
			} else {
				require.Contains(t, body, `data-testid="simulation"`)
			}
		})
	}
}

// Not parallel: it takes the process-wide simulation slots, and parallel
// tests wait until it is done.
func TestPolicySimulationsAreBounded(t *testing.T) {
	c := startConsole(t, nil)
	approver := c.client(t, "approver@example.com")
	form := url.Values{"candidate": {everythingExplicit}, "since": {"24h"}}

	release := web.HoldSimulations()
	resp, body := c.post(t, approver, "/policy", "/policy/simulate", form)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Contains(t, body, "2 simulations are already running; try again in a moment")

	release()
	resp, body = c.post(t, approver, "/policy", "/policy/simulate", form)
	require.Equal(t, http.StatusOK, resp.StatusCode, "a slot frees when a simulation ends")
	require.Contains(t, body, `data-testid="simulation"`)
	resp, _ = c.post(t, approver, "/policy", "/policy/simulate", form)
	require.Equal(t, http.StatusOK, resp.StatusCode, "and every simulation gives its slot back")
}

// TestPolicySimulationHasItsOwnTimeout: a simulation stops at its own limit,
// below the server's write timeout, with a line saying so, and gives its slot
// back, instead of running on after its answer could no longer be sent.
func TestPolicySimulationHasItsOwnTimeout(t *testing.T) {
	// Not parallel: it shortens a package-wide limit.
	c := startConsole(t, nil)
	approver := c.client(t, "approver@example.com")
	form := url.Values{"candidate": {everythingExplicit}, "since": {"24h"}}

	restore := web.SetSimulationTimeout(time.Nanosecond)
	for range 3 { // more than the slots: each gave its slot back
		resp, body := c.post(t, approver, "/policy", "/policy/simulate", form)
		require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
		require.Contains(t, body, "The simulation stopped: it took longer than 1ns; try a shorter window.")
		require.NotContains(t, body, `data-testid="simulation"`)
	}
	restore()
	resp, body := c.post(t, approver, "/policy", "/policy/simulate", form)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `data-testid="simulation"`)
}
