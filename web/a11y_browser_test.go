package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/demo"
)

// axeSource is axe-core's browser bundle, installed from npm with the
// versions pinned in testdata/axe (`npm ci` there; .ci/run does it). Without
// it the accessibility tests skip, except in CI, where they fail: a missing
// checker must not read as a pass.
func axeSource(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", "axe", "node_modules", "axe-core", "axe.min.js"))
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("axe-core is required in CI (cd web/testdata/axe && npm ci): %v", err)
		}
		t.Skipf("no axe-core (cd web/testdata/axe && npm ci): %v", err)
	}
	return string(src)
}

// axeViolation is one failed axe rule, with the elements it failed on.
type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Tags   []string `json:"tags"`
	Nodes  []struct {
		Target  []any  `json:"target"`
		Summary string `json:"failureSummary"`
	} `json:"nodes"`
}

// aaaOnly reports whether the rule checks only a WCAG AAA criterion
// (enhanced contrast, 7:1): the console's conformance target is A and AA, so
// such a violation is reported but does not fail the test.
func (v axeViolation) aaaOnly() bool {
	aaa := false
	for _, tag := range v.Tags {
		switch {
		case strings.HasPrefix(tag, "wcag") && strings.HasSuffix(tag, "aaa"):
			aaa = true
		case tag == "wcag2a" || tag == "wcag2aa" || tag == "wcag21a" || tag == "wcag21aa" || tag == "wcag22aa" || tag == "best-practice":
			return false
		}
	}
	return aaa
}

func (v axeViolation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s): %s", v.ID, v.Impact, v.Help)
	for i, n := range v.Nodes {
		if i == 3 {
			fmt.Fprintf(&b, "\n      … and %d more", len(v.Nodes)-3)
			break
		}
		fmt.Fprintf(&b, "\n      %v: %s", n.Target, strings.ReplaceAll(n.Summary, "\n", " "))
	}
	return b.String()
}

// awaitPromise makes chromedp.Evaluate wait for the promise a script returns.
func awaitPromise(p *cdpruntime.EvaluateParams) *cdpruntime.EvaluateParams {
	return p.WithAwaitPromise(true)
}

// axeRun injects axe-core into the current page and runs every rule it has
// (experimental and best-practice ones included), returning the serious and
// critical violations.
func axeRun(ctx context.Context, t *testing.T, src string) []axeViolation {
	t.Helper()
	var loaded bool
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(src+";\ntypeof window.axe === 'object'", &loaded)))
	require.True(t, loaded, "axe-core loaded")
	var raw string
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`(async () => {
		const rules = {};
		for (const r of axe.getRules()) rules[r.ruleId] = { enabled: true };
		const res = await axe.run(document, { rules, resultTypes: ["violations"] });
		return JSON.stringify(res.violations.filter(v => v.impact === "serious" || v.impact === "critical"));
	})()`, &raw, awaitPromise)))
	var vs []axeViolation
	require.NoError(t, json.Unmarshal([]byte(raw), &vs))
	return vs
}

// overflow is how many pixels the page is wider than the viewport.
func overflow(ctx context.Context, t *testing.T) float64 {
	t.Helper()
	var over float64
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(
		`document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth`, &over)))
	return over
}

// TestBrowserAccessibility opens every console page signed in as each role,
// at 1280 and 390 px, and runs axe-core with all its rules: no serious or
// critical violation anywhere, and no horizontal scroll on a phone. The
// inbox and the review page must also reflow at 320 px (WCAG 1.4.10).
func TestBrowserAccessibility(t *testing.T) {
	t.Parallel()
	src := axeSource(t)
	c := startConsole(t, nil)
	batchID, runs := readyBatch(t, c)
	seedMetrics(t, c)
	_, req := c.startRun(t, "support_triage", "T-a11y", demo.Ticket{ID: "a", Customer: "a@example.com",
		Subject: "Refund please", Body: "It arrived broken", OrderTotal: 40}, "api@example.com")

	type page struct{ path, testid string }
	pages := []page{
		{"/", "inbox"}, {"/?can=1&tier=explicit", "inbox"}, {"/requests/" + req.ID, "review"},
		{"/runs", "runs"}, {"/runs/" + runs[0].ID, "run"}, {"/batches", "batches"}, {"/batches/" + batchID, "batch"},
		{"/auto", "auto"}, {"/history", "history"}, {"/policy", "versions"}, {"/policy/rules", "rules-filter"}, {"/unusable", "unusable-filter"},
		{"/dashboard", "chart-runs"},
	}
	adminPages := []page{{"/admin/tokens", "tokens"}, {"/admin/deliveries", "delivery-filter"}}
	widths := []int64{1280, 390}
	var problems []string
	aaa := map[string]int{}
	check := func(ctx context.Context, t *testing.T, who string, p page) {
		for _, w := range widths {
			require.NoError(t, chromedp.Run(ctx, chromedp.EmulateViewport(w, 900), chromedp.Navigate(c.Addr+p.path),
				chromedp.WaitVisible(`[data-testid=`+p.testid+`]`, chromedp.ByQuery)))
			for _, v := range axeRun(ctx, t, src) {
				if v.aaaOnly() {
					aaa[v.ID] += len(v.Nodes)
					continue
				}
				problems = append(problems, fmt.Sprintf("%s %s at %d px: %s", who, p.path, w, v))
			}
			if w == 390 {
				if over := overflow(ctx, t); over > 0 {
					problems = append(problems, fmt.Sprintf("%s %s at %d px: scrolls sideways by %.0f px", who, p.path, w, over))
				}
			}
		}
	}
	t.Run("SignedOut", func(t *testing.T) {
		ctx := browser(t)
		check(ctx, t, "signed out", page{"/login", "login-form"})
	})
	for _, email := range []string{"viewer@example.com", "reviewer@example.com", "approver@example.com", "admin@example.com"} {
		t.Run(strings.Split(email, "@")[0], func(t *testing.T) {
			ctx := browser(t)
			c.signIn(ctx, t, email)
			ps := pages
			if email == "admin@example.com" {
				ps = append(append([]page{}, pages...), adminPages...)
			}
			for _, p := range ps {
				check(ctx, t, email, p)
			}
			if email == "reviewer@example.com" {
				for _, p := range []page{{"/", "inbox"}, {"/requests/" + req.ID, "review"}} {
					require.NoError(t, chromedp.Run(ctx, chromedp.EmulateViewport(320, 640), chromedp.Navigate(c.Addr+p.path),
						chromedp.WaitVisible(`[data-testid=`+p.testid+`]`, chromedp.ByQuery)))
					if over := overflow(ctx, t); over > 0 {
						problems = append(problems, fmt.Sprintf("%s at 320 px: scrolls sideways by %.0f px", p.path, over))
					}
				}
			}
		})
	}
	for id, n := range aaa {
		t.Logf("AAA only, not failing: %s on %d elements", id, n)
	}
	require.Empty(t, problems, "\n%s", strings.Join(problems, "\n"))
}
