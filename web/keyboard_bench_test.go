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

	cdpruntime "github.com/chromedp/cdproto/runtime"
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

// keyboardRun is what the scripted reviewer measured: one decision per
// entry, each timed in the browser from the decisive key's event time stamp.
type keyboardRun struct {
	Decisions, Keys, Risky int
	Swap, Nav              []decisionTime
	// Baseline is a plain GET of a review page (fetch, the same page the
	// decision renders) after each decision: its round trip and its
	// Server-Timing total.
	Baseline, BaselineServer []time.Duration
	Load                     string // /proc/loadavg at the end
}

// decisionTime is one decision's time, from the key (0) on. Swap: the
// page's form posts through htmx and swaps the answer (the next request)
// in. Nav: the same form posted natively (as without script, and as every
// decision was before the swap): POST, 303, GET of a whole page.
type decisionTime struct {
	// Sent is when the POST left (the key's handlers, the click, htmx).
	Sent time.Duration
	// Server is the server's own time from its Server-Timing header: the
	// decision's (auth: the middleware; inbox: its first page, which
	// names the next request; decide: the engine's transaction;
	// load: reading the next request; render) in Swap, the GET's in Nav
	// (auth, load, render), whose POST is ServerPost.
	Server, Auth, Inbox, Decide, LoadNext, Render time.Duration
	// ServerPost (Nav only) is the POST and its 303, a round trip whose
	// Server-Timing the browser does not expose.
	ServerPost time.Duration
	// Network is the round trips less the server's own time: loopback,
	// queueing, the connection.
	Network time.Duration
	// LastByte is the answer's last byte (the next request's page).
	LastByte time.Duration
	// Swapped is htmx's swap done (Swap), the DOM ready (Nav).
	Swapped time.Duration
	// Frame (Swap only) is the next animation frame after the swap: the
	// main thread's work is done there, and what follows until Painted is
	// style, layout, paint and compositing.
	Frame time.Duration
	// LaidOut (Swap only) is after style and layout, forced in that frame
	// (as the frame would do them next): the rest to Painted is paint,
	// raster and compositing.
	LaidOut time.Duration
	// Painted is the next request's summary painted (Element Timing of its
	// h1): the target's end.
	Painted time.Duration
}

// measureJS reads one decision's timings in the page the decision led to,
// as milliseconds on the wall clock (performance.timeOrigin plus the
// page's time), so that a navigation's two pages compare. The paint is
// the Element Timing entry of the summary now shown; the observer, fed
// from the buffer, answers at once when the paint is done.
const measureJS = `(async () => {
	const h1 = document.querySelector("#review [data-testid=summary]");
	const paint = await new Promise(res => {
		const o = new PerformanceObserver(l => {
			const e = l.getEntries().find(e => e.element === h1);
			if (e) { o.disconnect(); res(e.renderTime || e.loadTime); }
		});
		o.observe({ type: "element", buffered: true });
		setTimeout(() => { o.disconnect(); res(0); }, 5000);
	});
	const at = t => t ? performance.timeOrigin + t : 0;
	const st = e => Object.fromEntries((e ? e.serverTiming : []).map(x => [x.name, x.duration]));
	const n = performance.getEntriesByType("navigation")[0];
	const post = performance.getEntriesByType("resource").filter(e => e.name.endsWith("/decision")).pop();
	return { KeyAt: Number(sessionStorage.getItem("cs-key-at") || 0), Swapped: window.csSwapped ? at(window.csSwapped) : 0, Frame: window.csFrame ? at(window.csFrame) : 0, LaidOut: window.csLaidOut ? at(window.csLaidOut) : 0,
		Paint: at(paint),
		Post: post ? { Start: at(post.startTime), ResponseEnd: at(post.responseEnd), Timing: st(post) } : null,
		Nav: { Start: performance.timeOrigin, RedirectStart: at(n.redirectStart), RedirectEnd: at(n.redirectEnd),
			RequestStart: at(n.requestStart), ResponseEnd: at(n.responseEnd), DOMReady: at(n.domContentLoadedEventEnd), Timing: st(n) } };
})()`

type measured struct {
	KeyAt, Swapped, Frame, LaidOut, Paint float64
	Post                                  *struct {
		Start, ResponseEnd float64
		Timing             map[string]float64
	}
	Nav struct {
		Start, RedirectStart, RedirectEnd, RequestStart, ResponseEnd, DOMReady float64
		Timing                                                                 map[string]float64
	}
}

func msDur(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

// navDecision says which decisions the benchmark posts natively (Nav), to
// compare with the swap in the same run: 2 in 7, the rest through htmx.
func navDecision(i int) bool { return i%7 == 3 || i%7 == 6 }

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
	reviewShown(tb, bctx, order[0], 30*time.Second)
	for i, id := range order {
		nav := navDecision(i)
		if i > 0 {
			// A reviewer reads the request before deciding: static/app.js
			// drops a decision sent within its DWELL (500 ms) of the swap
			// (a double a). Before the timed key, so it is not measured.
			time.Sleep(550 * time.Millisecond)
		}
		if risky[id] {
			res.Risky++
			// The first a only asks; the timing starts at the second.
			press("a")
			evalTrue(tb, bctx, `document.getElementById("confirm-hint").classList.contains("armed")`, 10*time.Second, "the first a asks again")
		}
		// The decisive key's time, kept across a navigation in
		// sessionStorage; the review on screen is marked, so that only a
		// new one counts. Nav: the form's submit event is kept from htmx,
		// which leaves the browser's own form post.
		var ok bool
		require.NoError(tb, chromedp.Run(bctx, chromedp.Evaluate(fmt.Sprintf(`(() => {
			sessionStorage.removeItem("cs-key-at");
			performance.clearResourceTimings();
			window.csSwapped = 0; window.csFrame = 0; window.csLaidOut = 0;
			document.getElementById("review").setAttribute("data-cs-old", "");
			addEventListener("keydown", e => sessionStorage.setItem("cs-key-at", String(performance.timeOrigin + e.timeStamp)), { capture: true, once: true });
			document.addEventListener("htmx:afterSwap", () => { window.csSwapped = performance.now();
				requestAnimationFrame(() => { window.csFrame = performance.now(); void document.body.offsetHeight; window.csLaidOut = performance.now() }) }, { once: true });
			if (%t) document.addEventListener("submit", e => e.stopPropagation(), { capture: true, once: true });
			return true })()`, nav), &ok)))
		press("a")
		next := id // the last decision stays on its request and says so
		if i+1 < len(order) {
			next = order[i+1]
		}
		reviewShown(tb, bctx, next, 30*time.Second)
		var m measured
		require.NoError(tb, chromedp.Run(bctx, chromedp.Evaluate(measureJS, &m, func(p *cdpruntime.EvaluateParams) *cdpruntime.EvaluateParams {
			return p.WithAwaitPromise(true)
		})))
		require.NotZero(tb, m.KeyAt, "the key press was recorded")
		require.NotZero(tb, m.Paint, "the next request's summary was painted (Element Timing)")
		since := func(at float64) time.Duration { return msDur(at - m.KeyAt) }
		var d decisionTime
		if nav {
			require.Nil(tb, m.Post, "a native post leaves no resource entry")
			require.Greater(tb, m.Nav.Start, m.KeyAt, "a page was loaded after the key")
			require.NotZero(tb, m.Nav.RedirectStart, "the POST's redirect is timed")
			d.Sent = since(m.Nav.RedirectStart)
			d.ServerPost = msDur(m.Nav.RedirectEnd - m.Nav.RedirectStart)
			d.Server = msDur(m.Nav.Timing["total"])
			d.Auth, d.LoadNext, d.Render = msDur(m.Nav.Timing["auth"]), msDur(m.Nav.Timing["load"]), msDur(m.Nav.Timing["render"])
			d.Network = msDur(m.Nav.ResponseEnd-m.Nav.RequestStart) - d.Server
			d.LastByte = since(m.Nav.ResponseEnd)
			d.Swapped = since(m.Nav.DOMReady)
		} else {
			require.NotNil(tb, m.Post, "the decision was posted by htmx")
			require.Less(tb, m.Nav.Start, m.KeyAt, "and no page was loaded after the key")
			d.Sent = since(m.Post.Start)
			d.Server = msDur(m.Post.Timing["total"])
			d.Auth, d.Inbox, d.Decide = msDur(m.Post.Timing["auth"]), msDur(m.Post.Timing["inbox"]), msDur(m.Post.Timing["decide"])
			d.LoadNext, d.Render = msDur(m.Post.Timing["load"]), msDur(m.Post.Timing["render"])
			d.Network = msDur(m.Post.ResponseEnd-m.Post.Start) - d.Server
			d.LastByte = since(m.Post.ResponseEnd)
			d.Swapped = since(m.Swapped)
			d.Frame, d.LaidOut = since(m.Frame), since(m.LaidOut)
		}
		d.Painted = since(m.Paint)
		require.Positive(tb, d.Server, "the answer carries Server-Timing")
		require.GreaterOrEqual(tb, d.Painted, d.LastByte)
		if nav {
			res.Nav = append(res.Nav, d)
		} else {
			res.Swap = append(res.Swap, d)
		}
		// The baseline: a plain GET of the page now shown, from the browser.
		var base struct{ Took, Server float64 }
		require.NoError(tb, chromedp.Run(bctx, chromedp.Evaluate(`(async () => {
			const u = location.pathname + "?baseline=" + Math.random();
			await (await fetch(u, { credentials: "same-origin" })).text();
			const e = performance.getEntriesByName(location.origin + u)[0];
			return { Took: e.responseEnd - e.startTime, Server: (e.serverTiming.find(x => x.name === "total") || {}).duration || 0 };
		})()`, &base, func(p *cdpruntime.EvaluateParams) *cdpruntime.EvaluateParams { return p.WithAwaitPromise(true) })))
		res.Baseline = append(res.Baseline, msDur(base.Took))
		res.BaselineServer = append(res.BaselineServer, msDur(base.Server))
	}
	waitTrue(tb, bctx, `(document.querySelector("[data-testid=flash]") || {}).innerText?.includes("Nothing else is waiting")`)
	for _, id := range order {
		got, err := store.RequestGet(ctx, b.Pool, id)
		require.NoError(tb, err)
		require.Equal(tb, vocab.RequestApproved, got.Status, "request %s", id)
		require.Equal(tb, email, *got.DecidedBy)
	}
	if l, err := os.ReadFile("/proc/loadavg"); err == nil {
		res.Load = strings.TrimSpace(string(l))
	}
	return res
}

// reviewShown waits until the review of request id is on screen, a new one
// (the one the last key left is marked data-cs-old), loaded or swapped in:
// the last decision stays on its request.
func reviewShown(tb testing.TB, ctx context.Context, id string, within time.Duration) {
	tb.Helper()
	evalTrue(tb, ctx, fmt.Sprintf(`(() => { const r = document.getElementById("review");
		return !!r && !r.hasAttribute("data-cs-old") && r.dataset.request === %q && location.pathname === %q &&
			document.readyState === "complete" })()`, id, "/requests/"+id),
		within, "the review of "+id+" shown")
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
	fmt.Fprintf(&b, "load average at the end: %s\n\n", r.Load)
	fmt.Fprintf(&b, "| keyboard reviewer: %d explicit requests (%d irreversible: a a), keys per decision (target ≤ 2) | %.2f (%d keys) |\n",
		r.Decisions, r.Risky, float64(r.Keys)/float64(r.Decisions), r.Keys)
	fmt.Fprintf(&b, "| baseline: plain GET of a review page (fetch) p50 / p95, its Server-Timing total | %s, server %s |\n",
		pp(r.Baseline), pp(r.BaselineServer))
	fmt.Fprintf(&b, "\n| from the key, p50 / p95 | swap (%d) | native post, 303, GET (%d) |\n|---|---|---|\n", len(r.Swap), len(r.Nav))
	row := func(name string, f func(decisionTime) time.Duration) {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", name, pp(col(r.Swap, f)), pp(col(r.Nav, f)))
	}
	row("POST sent (key handlers, click, htmx)", func(d decisionTime) time.Duration { return d.Sent })
	row("server, Server-Timing total (Nav: the GET's)", func(d decisionTime) time.Duration { return d.Server })
	row("… auth (session, user, CSRF: the middleware)", func(d decisionTime) time.Duration { return d.Auth })
	row("… inbox (its first page, for the next request)", func(d decisionTime) time.Duration { return d.Inbox })
	row("… decide (the engine's transaction)", func(d decisionTime) time.Duration { return d.Decide })
	row("… load the next request", func(d decisionTime) time.Duration { return d.LoadNext })
	row("… render it", func(d decisionTime) time.Duration { return d.Render })
	row("POST and 303 round trip (Nav only)", func(d decisionTime) time.Duration { return d.ServerPost })
	row("network: round trip less server (Nav: the GET's)", func(d decisionTime) time.Duration { return d.Network })
	row("next request's last byte", func(d decisionTime) time.Duration { return d.LastByte })
	row("swapped in (Nav: DOMContentLoaded)", func(d decisionTime) time.Duration { return d.Swapped })
	row("next animation frame (Swap only)", func(d decisionTime) time.Duration { return d.Frame })
	row("style and layout done in it (Swap only)", func(d decisionTime) time.Duration { return d.LaidOut })
	row("**painted (server + render; target p95 ≤ 150 ms)**", func(d decisionTime) time.Duration { return d.Painted })
	return b.String()
}

func col(ds []decisionTime, f func(decisionTime) time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = f(d)
	}
	return out
}

// pp is "p50 / p95" in milliseconds.
func pp(d []time.Duration) string {
	if !slices.ContainsFunc(d, func(x time.Duration) bool { return x != 0 }) {
		return "–" // not measured in this mode
	}
	return fmt.Sprintf("%.1f / %.1f ms", msOf(durPercentile(d, 50)), msOf(durPercentile(d, 95)))
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkKeyboardReviewer is make bench's scripted reviewer: 70 explicit
// requests decided with keys alone, 50 through htmx's swap (the page as it
// is) and 20 by the native form post (navDecision), in the same run for the
// comparison. Run it once:
//
//	go test -run '^$' -bench KeyboardReviewer -benchtime 1x ./web/
func BenchmarkKeyboardReviewer(b *testing.B) {
	for range b.N {
		r := reviewByKeyboard(b, 70)
		b.ReportMetric(float64(r.Keys)/float64(r.Decisions), "keys/decision")
		painted := col(r.Swap, func(d decisionTime) time.Duration { return d.Painted })
		b.ReportMetric(msOf(durPercentile(painted, 50)), "painted-ms-p50")
		b.ReportMetric(msOf(durPercentile(painted, 95)), "painted-ms-p95")
		// Printed whole: a benchmark's log is cut after ten lines.
		fmt.Println(r.report())
	}
}

// TestBrowserKeyboardReviewerSmoke runs the scripted reviewer on 4 requests:
// the script works and counts what it should (j, Enter, then a, a a, a, and
// a a posted natively).
func TestBrowserKeyboardReviewerSmoke(t *testing.T) {
	t.Parallel()
	r := reviewByKeyboard(t, 4)
	require.Equal(t, 2+1+2+1+2, r.Keys)
	require.Equal(t, 2, r.Risky)
	require.Len(t, r.Swap, 3)
	require.Len(t, r.Nav, 1)
	t.Log("\n" + r.report())
}
