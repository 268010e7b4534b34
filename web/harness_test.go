package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/client"
	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
)

const password = "correct-horse-battery"

var users = map[string]string{
	"reviewer@example.com":  "reviewer",
	"approver@example.com":  "approver",
	"approver2@example.com": "approver",
	"admin@example.com":     "admin",
	"viewer@example.com":    "viewer",
}

type console struct {
	*testapp.Bundle
}

// startConsole runs a full process (web and workers) with the example policy,
// the test users, and any extra workflows.
func startConsole(t *testing.T, register func(*workflow.Registry, *ai.Offline)) *console {
	t.Helper()
	return startConsoleWith(t, testapp.Options{Register: register})
}

// startConsoleWith is startConsole with more of the process's options.
func startConsoleWith(t *testing.T, opts testapp.Options) *console {
	t.Helper()
	opts.Web = true
	b := testapp.Start(t, opts)
	ctx := context.Background()
	_, err := policystore.Apply(ctx, b.Pool, policy.Example, "setup")
	require.NoError(t, err)
	b.App.Policies.Invalidate()
	for email, role := range users {
		_, err := account.Create(ctx, b.Pool, email, strings.Split(email, "@")[0], role, password, "setup")
		require.NoError(t, err)
	}
	return &console{b}
}

// startRun starts a run as started-by and waits for it to wait for a human.
func (c *console) startRun(t *testing.T, wf, key string, input any, by string) (*store.Run, *store.Request) {
	t.Helper()
	raw, _ := json.Marshal(input)
	run, _, err := c.Engine.Start(context.Background(), workflow.StartParams{Workflow: wf, BusinessKey: key, Input: raw, StartedBy: by})
	require.NoError(t, err)
	run = c.WaitRun(t, run.ID, vocab.RunWaitingHuman)
	return run, c.PendingRequest(t, run.ID)
}

// client is an HTTP client with a cookie jar, signed in as email.
func (c *console) client(t *testing.T, email string) *http.Client {
	t.Helper()
	cl, err := client.SignIn(c.Addr, email, password) // fails unless 303 to /
	require.NoError(t, err)
	return cl.HTTP
}

// csrf fetches a page and returns the form's CSRF token.
func (c *console) csrf(t *testing.T, hc *http.Client, path string) string {
	t.Helper()
	token, err := (&client.Client{Base: c.Addr, HTTP: hc}).Token(path)
	require.NoError(t, err)
	return token
}

// get fetches a page and parses it.
func (c *console) get(t *testing.T, hc *http.Client, path string) (*goquery.Document, int) {
	t.Helper()
	resp, err := hc.Get(c.Addr + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	doc, err := goquery.NewDocumentFromReader(resp.Body)
	require.NoError(t, err)
	return doc, resp.StatusCode
}

// post submits a form with the CSRF token from page.
func (c *console) post(t *testing.T, hc *http.Client, page, path string, form url.Values) (*http.Response, string) {
	t.Helper()
	form.Set("_csrf", c.csrf(t, hc, page))
	resp, err := hc.PostForm(c.Addr+path, form)
	require.NoError(t, err)
	// A refused decision redirects back to its page (post, redirect, get):
	// follow it, so that tests see the page that says why and its status.
	if loc := resp.Header.Get("Location"); resp.StatusCode == http.StatusSeeOther && client.Refused(loc) {
		resp.Body.Close()
		resp, err = hc.Get(c.Addr + loc)
		require.NoError(t, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// browser starts headless Debian chromium with the flags this machine needs.
// browsers bounds how many chromium instances run at once: on two cores, more
// of them starve the servers under test and turn timing into failures.
var browsers = make(chan struct{}, 2)

func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := findChromium()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("chromium is required in CI: %v", err)
		}
		t.Skipf("no chromium: %v", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1280, 900),
	}
	// Not t.TempDir: chromium may still be writing its profile as it exits.
	dir, err := os.MkdirTemp("", "cs-chromium-")
	require.NoError(t, err)
	opts = append(opts, chromedp.UserDataDir(dir))
	browsers <- struct{}{}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	// Newer chromium sends CDP events this chromedp does not know; they are harmless.
	ctx, cancelB := chromedp.NewContext(actx, chromedp.WithErrorf(func(string, ...any) {}))
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() {
		cancelT()
		cancelB()
		cancelA()
		<-browsers
		// Removed here, not later on a timer: a timer does not fire once the
		// test binary exits, which left a profile behind for every browser
		// test. Chromium may still be closing files, so retry for a moment.
		for i := 0; i < 20 && os.RemoveAll(dir) != nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	})
	require.NoError(t, chromedp.Run(ctx))
	return ctx
}

func findChromium() (string, error) {
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

// signIn signs a browser in.
func (c *console) signIn(ctx context.Context, t *testing.T, email string) {
	t.Helper()
	require.NoError(t, chromedp.Run(ctx,
		chromedp.Navigate(c.Addr+"/login"),
		chromedp.SendKeys(`[data-testid=email]`, email, chromedp.ByQuery),
		chromedp.SendKeys(`[data-testid=password]`, password, chromedp.ByQuery),
		clickOn(`[data-testid=login-submit]`),
		chromedp.WaitVisible(`[data-testid=inbox]`, chromedp.ByQuery),
	))
}

// screenshot saves a PNG when CS_SCREENSHOTS names a folder, for looking at
// the pages; tests never depend on it.
func screenshot(ctx context.Context, t *testing.T, name string) {
	dir := os.Getenv("CS_SCREENSHOTS")
	if dir == "" {
		return
	}
	var buf []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&buf, 100)); err == nil {
		_ = os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644)
	}
}

// text returns an element's text, waiting up to 20 s for the element. It
// reads in one script evaluation: a live refresh may swap the node between a
// query and a separate read, which chromedp reports as "No node with given id".
func text(ctx context.Context, t *testing.T, sel string) string {
	t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.innerText : null })()`, sel)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var s *string
		err := chromedp.Run(ctx, chromedp.Evaluate(js, &s))
		if err == nil && s != nil {
			return *s
		}
		if time.Now().After(deadline) {
			require.NoError(t, err)
			t.Fatalf("no element matches %s", sel)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clickOn clicks the element sel matches, waiting up to 20 s for it. The
// query and the click are one script evaluation, so a live refresh that swaps
// the node in between cannot fail it, as it can chromedp.Click, which finds
// the node and clicks it in separate round trips.
func clickOn(sel string) chromedp.Action {
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return false; e.click(); return true })()`, sel)
	return chromedp.ActionFunc(func(ctx context.Context) error {
		deadline := time.Now().Add(20 * time.Second)
		for {
			var ok bool
			err := chromedp.Evaluate(js, &ok).Do(ctx)
			if err == nil && ok {
				return nil
			}
			if time.Now().After(deadline) {
				if err == nil {
					err = fmt.Errorf("no element matches %s", sel)
				}
				return err
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// waitText waits until an element's text contains want.
func waitText(ctx context.Context, t *testing.T, sel, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var s string
	for time.Now().Before(deadline) {
		_ = chromedp.Run(ctx, chromedp.Text(sel, &s, chromedp.ByQuery, chromedp.AtLeast(0)))
		if strings.Contains(s, want) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s says %q, not %q", sel, s, want)
}

func newJar() (http.CookieJar, error) { return cookiejar.New(nil) }

// waitLocation waits until the page's URL contains want.
func waitLocation(ctx context.Context, t *testing.T, want string) {
	t.Helper()
	var loc string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if chromedp.Run(ctx, chromedp.Location(&loc)) == nil && strings.Contains(loc, want) {
			_ = chromedp.Run(ctx, chromedp.WaitReady("body", chromedp.ByQuery))
			return
		}
	}
	t.Fatalf("the page is %s, not one with %q", loc, want)
}

func policyExample() []byte { return policy.Example }
