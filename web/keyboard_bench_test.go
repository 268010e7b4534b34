package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
)

// The scripted keyboard reviewer (issue 12, "Measured in make bench"): a
// reviewer in headless chromium decides explicit requests with the review
// page's keys alone, from the inbox on, going on by the page's auto-advance.
// BenchmarkKeyboardReviewer decides 50 (make bench); the smoke test decides 3
// in make test, so that the script keeps working.

// keysBenchInput is the keys_bench workflow's input: whether its action is
// irreversible, which the review page confirms with a second a.
type keysBenchInput struct {
	N     int  `json:"n"`
	Risky bool `json:"risky"`
}

// registerKeysBench registers keys_bench: one approval of an action of a kind
// no rule of the example policy names, so that it is reviewed explicitly.
func registerKeysBench(r *workflow.Registry, _ *ai.Offline) {
	workflow.Register(r, "keys_bench", func(ctx context.Context, in keysBenchInput) (string, error) {
		risk := "low"
		if in.Risky {
			risk = "high"
		}
		d, err := workflow.RequestApproval(ctx, workflow.Action{Kind: "account.credit",
			Target:  fmt.Sprintf("customer %d", in.N),
			Summary: fmt.Sprintf("Credit customer %d with 20 EUR for a late delivery", in.N), Rationale: "The parcel was 3 days late.",
			Risk: risk, Reversible: !in.Risky, Params: map[string]any{"amount": 20, "currency": "EUR", "customer": in.N}})
		if err != nil {
			return "", err
		}
		return string(d.Verdict), nil
	})
}

// keyboardRun is what the scripted reviewer measured.
type keyboardRun struct {
	Decisions, Keys, Risky int
	// Server is from the decisive key press to the next page's last byte,
	// Painted to its first contentful paint (the request on screen), Loaded
	// to its load event (scripts run, the focus on the toast): all measured
	// in the browser, from the key event's own time stamp.
	Server, Painted, Loaded []time.Duration
}

// reviewByKeyboard starts a console with n pending explicit requests (every
// other one irreversible), signs a reviewer in, and decides them all with
// keys: j and Enter open the first from the inbox, then a (or a a) on each,
// the page going on to the next by itself.
func reviewByKeyboard(tb testing.TB, n int) keyboardRun {
	tb.Helper()
	b := testapp.Start(tb, testapp.Options{Web: true, Register: registerKeysBench})
	ctx := context.Background()
	_, err := policystore.Apply(ctx, b.Pool, policy.Example, "setup")
	require.NoError(tb, err)
	b.App.Policies.Invalidate()
	const email = "reviewer@example.com"
	_, err = account.Create(ctx, b.Pool, email, "reviewer", "reviewer", password, "setup")
	require.NoError(tb, err)

	risky := map[string]bool{}
	var ids []string
	for i := range n {
		in, _ := json.Marshal(keysBenchInput{N: i, Risky: i%2 == 1})
		run, _, err := b.Engine.Start(ctx, workflow.StartParams{Workflow: "keys_bench", BusinessKey: fmt.Sprint("K-", i),
			Input: in, StartedBy: "agent@example.com"})
		require.NoError(tb, err)
		run = b.WaitRun(tb, run.ID, vocab.RunWaitingHuman)
		req := b.PendingRequest(tb, run.ID)
		require.Equal(tb, vocab.TierExplicit, req.Tier)
		ids = append(ids, req.ID)
		risky[req.ID] = i%2 == 1
	}
	// The order the reviewer meets them in: the inbox's.
	rows, err := store.RequestListInbox(ctx, b.Pool, store.InboxParams{Limit: 200, Now: time.Now()})
	require.NoError(tb, err)
	var order []string
	for _, r := range rows {
		order = append(order, r.Request.ID)
	}
	require.ElementsMatch(tb, ids, order)

	bctx := keysBrowser(tb)
	res := keyboardRun{Decisions: n}
	press := func(ks ...string) {
		tb.Helper()
		res.Keys += len(ks)
		for _, k := range ks {
			require.NoError(tb, chromedp.Run(bctx, chromedp.KeyEvent(k)))
		}
	}
	// Signing in is typing, not deciding: its keys are not counted.
	require.NoError(tb, chromedp.Run(bctx, chromedp.Navigate(b.Addr+"/login"),
		chromedp.WaitVisible(`[data-testid=login-form]`, chromedp.ByQuery),
		chromedp.SendKeys(`[data-testid=email]`, email, chromedp.ByQuery),
		chromedp.SendKeys(`[data-testid=password]`, password+"\r", chromedp.ByQuery),
		chromedp.WaitVisible(`[data-testid=inbox]`, chromedp.ByQuery)))
	press("j")
	press("\r")
	pageLoaded(tb, bctx, "/requests/"+order[0], 30*time.Second)
	for i, id := range order {
		// The decisive key's time, kept across the navigation it starts. Both
		// pages place their own clock on the wall clock (Date.now() less
		// performance.now()), which every process of chromium shares.
		var ok bool
		require.NoError(tb, chromedp.Run(bctx, chromedp.Evaluate(`(() => {
			sessionStorage.removeItem("cs-key-at");
			window.csLeft = true; // gone once the next page has replaced this one
			window.addEventListener("keydown", e => sessionStorage.setItem("cs-key-at", String(Date.now() - performance.now() + e.timeStamp)), { capture: true });
			return true })()`, &ok)))
		if risky[id] {
			res.Risky++
			// The first a only asks; the timing starts at the second.
			press("a")
			evalTrue(tb, bctx, `document.getElementById("confirm-hint").classList.contains("armed")`, 10*time.Second, "the first a asks again")
		}
		press("a")
		next := id // the last decision stays on its request and says so
		if i+1 < len(order) {
			next = order[i+1]
		}
		pageLoaded(tb, bctx, "/requests/"+next, 30*time.Second)
		var m struct{ KeyAt, Origin, ResponseEnd, Paint, LoadEnd float64 }
		waitTrue(tb, bctx, `performance.getEntriesByName("first-contentful-paint").length > 0`)
		require.NoError(tb, chromedp.Run(bctx, chromedp.Evaluate(`(() => { const n = performance.getEntriesByType("navigation")[0];
			return { KeyAt: Number(sessionStorage.getItem("cs-key-at") || 0), Origin: Date.now() - performance.now(),
				ResponseEnd: n.responseEnd, Paint: performance.getEntriesByName("first-contentful-paint")[0].startTime,
				LoadEnd: n.loadEventEnd } })()`, &m)))
		require.NotZero(tb, m.KeyAt, "the key press was recorded")
		ms := func(at float64) time.Duration {
			return time.Duration((m.Origin + at - m.KeyAt) * float64(time.Millisecond))
		}
		res.Server = append(res.Server, ms(m.ResponseEnd))
		res.Painted = append(res.Painted, ms(m.Paint))
		res.Loaded = append(res.Loaded, ms(m.LoadEnd))
		require.Positive(tb, res.Server[i])
		require.GreaterOrEqual(tb, res.Painted[i], res.Server[i])
	}
	waitTrue(tb, bctx, `(document.querySelector("[data-testid=flash]") || {}).innerText?.includes("Nothing else is waiting")`)
	for _, id := range order {
		got, err := store.RequestGet(ctx, b.Pool, id)
		require.NoError(tb, err)
		require.Equal(tb, vocab.RequestApproved, got.Status, "request %s", id)
		require.Equal(tb, email, *got.DecidedBy)
	}
	return res
}

// pageLoaded waits until a new page at path has loaded (its load event
// done): the last decision stays on its request's path, so the page that was
// there before the key (marked csLeft) does not count.
func pageLoaded(tb testing.TB, ctx context.Context, path string, within time.Duration) {
	tb.Helper()
	evalTrue(tb, ctx, fmt.Sprintf(`!window.csLeft && location.pathname === %q && document.readyState === "complete" &&
		performance.getEntriesByType("navigation")[0].loadEventEnd > 0 && !!document.querySelector("[data-testid=review]")`, path),
		within, "the page "+path+" loaded")
}

func waitTrue(tb testing.TB, ctx context.Context, js string) {
	tb.Helper()
	evalTrue(tb, ctx, js, 20*time.Second, js)
}

// evalTrue polls js in the page until it is true. A navigation in between
// fails an evaluation; it is tried again.
func evalTrue(tb testing.TB, ctx context.Context, js string, within time.Duration, what string) {
	tb.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		var ok bool
		if chromedp.Run(ctx, chromedp.Evaluate(js, &ok)) == nil && ok {
			return
		}
	}
	tb.Fatalf("timed out waiting: %s", what)
}

// keysBrowser is headless chromium with the flags of browser (harness_test.go),
// for a benchmark as for a test.
func keysBrowser(tb testing.TB) context.Context {
	tb.Helper()
	path, err := findChromium()
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("chromium is required in CI: %v", err)
		}
		tb.Skipf("no chromium: %v", err)
	}
	dir, err := os.MkdirTemp("", "cs-chromium-")
	require.NoError(tb, err)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1280, 900), chromedp.UserDataDir(dir))
	ctx, cancelB := chromedp.NewContext(actx, chromedp.WithErrorf(func(string, ...any) {}))
	ctx, cancelT := context.WithTimeout(ctx, 10*time.Minute)
	tb.Cleanup(func() {
		cancelT()
		cancelB()
		cancelA()
		for i := 0; i < 20 && os.RemoveAll(dir) != nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	})
	require.NoError(tb, chromedp.Run(ctx))
	return ctx
}

func durPercentile(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// report prints what the reviewer measured as rows of docs/BENCHMARKS.md.
func (r keyboardRun) report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "| keyboard reviewer: %d explicit requests (%d irreversible: a a), keys per decision (target ≤ 2) | %.2f (%d keys) |\n",
		r.Decisions, r.Risky, float64(r.Keys)/float64(r.Decisions), r.Keys)
	fmt.Fprintf(&b, "| keyboard reviewer: key → next request's last byte (server) p50 / p95 | %.1f ms / %.1f ms |\n",
		msOf(durPercentile(r.Server, 50)), msOf(durPercentile(r.Server, 95)))
	fmt.Fprintf(&b, "| keyboard reviewer: key → next request painted (server + render) p50 / p95 (target p95 ≤ 150 ms) | %.1f ms / %.1f ms |\n",
		msOf(durPercentile(r.Painted, 50)), msOf(durPercentile(r.Painted, 95)))
	fmt.Fprintf(&b, "| keyboard reviewer: key → next request's load event (scripts run, focus on the toast) p50 / p95 | %.1f ms / %.1f ms |\n",
		msOf(durPercentile(r.Loaded, 50)), msOf(durPercentile(r.Loaded, 95)))
	return b.String()
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkKeyboardReviewer is make bench's scripted reviewer: 50 explicit
// requests decided with keys alone. Run it once:
//
//	go test -run '^$' -bench KeyboardReviewer -benchtime 1x ./web/
func BenchmarkKeyboardReviewer(b *testing.B) {
	for range b.N {
		r := reviewByKeyboard(b, 50)
		b.ReportMetric(float64(r.Keys)/float64(r.Decisions), "keys/decision")
		b.ReportMetric(msOf(durPercentile(r.Painted, 50)), "painted-ms-p50")
		b.ReportMetric(msOf(durPercentile(r.Painted, 95)), "painted-ms-p95")
		b.Log("\n" + r.report())
	}
}

// TestBrowserKeyboardReviewerSmoke runs the scripted reviewer on 3 requests:
// the script works and counts what it should (j, Enter, then a, a a, a).
func TestBrowserKeyboardReviewerSmoke(t *testing.T) {
	t.Parallel()
	r := reviewByKeyboard(t, 3)
	require.Equal(t, 2+1+2+1, r.Keys)
	require.Equal(t, 1, r.Risky)
	require.Len(t, r.Painted, 3)
	t.Log("\n" + r.report())
}
