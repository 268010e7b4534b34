package web_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
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
				require.Contains(t, body, "Only approvers and admins may simulate a policy.")
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

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// refundWorkflow proposes one refund of the input amount.
func refundWorkflow(r *workflow.Registry, _ *ai.Offline) {
	workflow.Register(r, "refunds", func(ctx context.Context, amount float64) (string, error) {
		d, err := workflow.RequestApproval(ctx, workflow.Action{Kind: "payment.refund", Summary: "Refund to a customer",
			Params: map[string]any{"amount": amount}})
		return string(d.Verdict), err
	})
}

// TestPolicyActivationConfirms: activating first shows the simulation and
// the text diff and activates nothing; the confirmation activates exactly the
// text shown. Raising the big-refund threshold keeps every refund explicit
// but is flagged as a loosening.
func TestPolicyActivationConfirms(t *testing.T) {
	t.Parallel()
	c := startConsole(t, refundWorkflow)
	ctx := context.Background()
	run, _, err := c.Engine.Start(ctx, workflow.StartParams{Workflow: "refunds", BusinessKey: "r600", Input: []byte("600"), StartedBy: "test"})
	require.NoError(t, err)
	c.WaitRun(t, run.ID, vocab.RunWaitingHuman)
	raised := strings.ReplaceAll(string(policy.Example), "> 500.0", "> 800.0")
	admin := c.client(t, "admin@example.com")
	active := func() int {
		v, err := store.PolicyGetActive(ctx, c.Pool)
		require.NoError(t, err)
		return v.Version
	}

	t.Run("FirstStepShowsAndActivatesNothing", func(t *testing.T) {
		resp, body := c.post(t, admin, "/policy", "/policy/apply", url.Values{"candidate": {raised}})
		require.Equal(t, http.StatusOK, resp.StatusCode)
		doc, err := goquery.NewDocumentFromReader(strings.NewReader(body))
		require.NoError(t, err)
		require.Equal(t, 1, active(), "nothing is activated before the confirmation")
		require.Contains(t, doc.Find(`[data-testid=confirm-activation] h2`).Text(), "stored version 2")
		diff := doc.Find(`[data-testid=policy-diff]`).Text()
		require.Contains(t, diff, "- ")
		require.Contains(t, diff, "> 500.0")
		require.Contains(t, diff, "> 800.0")
		require.Contains(t, doc.Find(`[data-testid=sim-summary]`).Text(), "1 request since")
		require.Equal(t, 1, doc.Find(`[data-testid=confirm-loosened]`).Length(), "the loosening is flagged before confirming")
		require.Equal(t, 1, doc.Find(`[data-testid=loosened-approvals]`).Length())
		require.Zero(t, doc.Find(`[data-testid=sim-no-change]`).Length())
		require.Equal(t, 1, doc.Find(`[data-testid=looser]`).Length())
		confirm, _ := doc.Find(`[data-testid=confirm-form] input[name=confirm]`).Attr("value")
		require.Equal(t, sha256Hex(raised), confirm)
		csrf, _ := doc.Find(`[data-testid=confirm-form] input[name=_csrf]`).Attr("value")
		require.NotEmpty(t, csrf, "the confirmation is a CSRF-guarded POST")
	})

	t.Run("ConfirmationOfOtherTextIsRefused", func(t *testing.T) {
		resp, _ := c.post(t, admin, "/policy", "/policy/apply", url.Values{"candidate": {raised + "\n# changed since\n"}, "confirm": {sha256Hex(raised)}})
		require.Equal(t, http.StatusConflict, resp.StatusCode)
		require.Equal(t, 1, active())
	})

	t.Run("ConfirmationActivates", func(t *testing.T) {
		resp, _ := c.post(t, admin, "/policy", "/policy/apply", url.Values{"candidate": {raised}, "confirm": {sha256Hex(raised)}})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		require.Equal(t, 2, active())
		doc, _ := c.get(t, admin, "/policy")
		require.Contains(t, doc.Find(`[data-testid=active-version]`).Text(), "Stored version 2 is active")
		require.Contains(t, doc.Find(`[data-testid=format-version]`).Text(), "version: 1", "the document's own version is named apart")
	})
}
