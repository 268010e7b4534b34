// Package client drives the reviewer console over HTTP as a person's browser
// would: a cookie session, the CSRF token of its forms, and decisions posted
// through the review form. The web tests and the console benchmark share it;
// it imports no testing package, so every failure is an error to check.
package client

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"

	"github.com/PuerkitoBio/goquery"
)

// Client is one browser session on the console at Base.
type Client struct {
	Base string
	// HTTP keeps the session cookie and does not follow redirects, so that
	// callers see the console's 303s.
	HTTP *http.Client
	// CSRF is the session's form token, read after sign-in.
	CSRF string
}

// New returns a client without a session.
func New(base string) *Client {
	jar, _ := cookiejar.New(nil) // cookiejar.New never fails without options
	return &Client{Base: base, HTTP: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{MaxIdleConnsPerHost: 4}}}
}

// SignIn returns a client signed in as email. It fails unless the console
// answers the sign-in form with a redirect to the inbox.
func SignIn(base, email, password string) (*Client, error) {
	c := New(base)
	token, err := c.Token("/login")
	if err != nil {
		return nil, err
	}
	resp, err := c.HTTP.PostForm(base+"/login", url.Values{"email": {email}, "password": {password}, "_csrf": {token}})
	if err != nil {
		return nil, fmt.Errorf("sign in %s: %w", email, err)
	}
	drain(resp)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		return nil, fmt.Errorf("sign in %s: %d to %q, not 303 to /", email, resp.StatusCode, resp.Header.Get("Location"))
	}
	if c.CSRF, err = c.Token("/"); err != nil {
		return nil, err
	}
	return c, nil
}

// Token fetches the page at path and returns its forms' CSRF token. Returns
// an error when the page has no token field.
func (c *Client) Token(path string) (string, error) {
	resp, err := c.HTTP.Get(c.Base + path)
	if err != nil {
		return "", fmt.Errorf("get %s: %w", path, err)
	}
	defer resp.Body.Close()
	doc, err := goquery.NewDocumentFromReader(resp.Body)
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", path, err)
	}
	token, ok := doc.Find(`input[name=_csrf]`).First().Attr("value")
	if !ok {
		return "", fmt.Errorf("no csrf field on %s (%d)", path, resp.StatusCode)
	}
	return token, nil
}

// Post submits form to path with the session's CSRF token and returns the
// response with its body read.
func (c *Client) Post(path string, form url.Values) (*http.Response, []byte, error) {
	f := url.Values{}
	for k, v := range form {
		f[k] = v
	}
	f.Set("_csrf", c.CSRF)
	resp, err := c.HTTP.PostForm(c.Base+path, f)
	if err != nil {
		return nil, nil, fmt.Errorf("post %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	return resp, body, nil
}

// Decide posts a verdict on a request through the review form, with the
// payload hash the reviewer saw and any other fields of the form (reason,
// comment, edited parameters), and returns the response status: 303 when
// the decision was taken. A refused decision redirects back to the review
// page (post, redirect, get); Decide follows that redirect and returns the
// status of the page that says why (409, 422, ...).
func (c *Client) Decide(requestID, verdict, payloadHash string, more url.Values) (int, error) {
	form := url.Values{"verdict": {verdict}, "payload_hash": {payloadHash}}
	for k, v := range more {
		form[k] = v
	}
	resp, _, err := c.Post("/requests/"+requestID+"/decision", form)
	if err != nil {
		return 0, err
	}
	if loc := resp.Header.Get("Location"); resp.StatusCode == http.StatusSeeOther && Refused(loc) {
		page, err := c.HTTP.Get(c.Base + loc)
		if err != nil {
			return 0, fmt.Errorf("get %s: %w", loc, err)
		}
		drain(page)
		return page.StatusCode, nil
	}
	return resp.StatusCode, nil
}

// Refused reports whether a decision's redirect goes back to a refusal.
func Refused(location string) bool { return strings.Contains(location, "refused=") }

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}
