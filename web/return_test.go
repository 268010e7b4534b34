package web_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/client"
)

// TestSignInReturnsToTheAskedPage: a page asked for while signed out is the
// one signing in leads to, and only a path on this site is followed.
func TestSignInReturnsToTheAskedPage(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)

	signIn := func(t *testing.T, cl *client.Client, loginPath, next string) string {
		t.Helper()
		resp, err := cl.HTTP.Get(c.Addr + loginPath)
		require.NoError(t, err)
		doc, err := goquery.NewDocumentFromReader(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		token, _ := doc.Find(`input[name=_csrf]`).Attr("value")
		form := url.Values{"email": {"reviewer@example.com"}, "password": {password}, "_csrf": {token}}
		if next != "" {
			form.Set("next", next)
		}
		resp, err = cl.HTTP.PostForm(c.Addr+"/login", form)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		return resp.Header.Get("Location")
	}

	t.Run("AskedPage", func(t *testing.T) {
		cl := client.New(c.Addr)
		resp, err := cl.HTTP.Get(c.Addr + "/history?kind=user.signed_in")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		login := resp.Header.Get("Location")
		require.Equal(t, "/login?next="+url.QueryEscape("/history?kind=user.signed_in"), login)
		// The login form carries the page on; signing in goes there.
		resp, err = cl.HTTP.Get(c.Addr + login)
		require.NoError(t, err)
		doc, err := goquery.NewDocumentFromReader(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		next, _ := doc.Find(`[data-testid=next]`).Attr("value")
		require.Equal(t, "/history?kind=user.signed_in", next)
		require.Equal(t, "/history?kind=user.signed_in", signIn(t, cl, login, next))
		// Signed in, the login page itself sends on to next.
		resp, err = cl.HTTP.Get(c.Addr + "/login?next=%2Fruns")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, "/runs", resp.Header.Get("Location"))
	})

	t.Run("FormPostReturnsToItsPage", func(t *testing.T) {
		// A session that ended while the page was open: the form carries the
		// token of the cookie the browser now holds (a pre-session's).
		cl := client.New(c.Addr)
		token, err := cl.Token("/login")
		require.NoError(t, err)
		req, err := http.NewRequest(http.MethodPost, c.Addr+"/runs/00000000-0000-0000-0000-000000000000/cancel",
			strings.NewReader(url.Values{"_csrf": {token}}.Encode()))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Referer", c.Addr+"/runs/00000000-0000-0000-0000-000000000000")
		resp, err := cl.HTTP.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		require.Equal(t, "/login?next="+url.QueryEscape("/runs/00000000-0000-0000-0000-000000000000"), resp.Header.Get("Location"))
	})

	for _, evil := range []string{
		"//evil.example/x",
		"/\\evil.example",
		"/\\/evil.example",
		"http://evil.example/",
		"https:evil.example",
		"javascript:alert(1)",
		"evil.example",
		"/%0d%0aSet-Cookie:x",
		"\\\\evil.example",
		" //evil.example",
	} {
		t.Run("Refuses "+evil, func(t *testing.T) {
			cl := client.New(c.Addr)
			loc := signIn(t, cl, "/login?next="+url.QueryEscape(evil), evil)
			if evil == "/%0d%0aSet-Cookie:x" {
				// Still escaped: a path on this site, and no header is split.
				require.Equal(t, evil, loc)
				return
			}
			require.Equal(t, "/", loc)
			// The page does not offer it either.
			resp, err := client.New(c.Addr).HTTP.Get(c.Addr + "/login?next=" + url.QueryEscape(evil))
			require.NoError(t, err)
			doc, err := goquery.NewDocumentFromReader(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Zero(t, doc.Find(`[data-testid=next]`).Length())
		})
	}
}
