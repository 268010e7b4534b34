package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/sessions"
	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/templates"
	"github.com/countersign/countersign/vocab"
)

// Session lifetimes: a session ends 12 hours after sign-in, or after 30
// minutes without a request, whichever comes first.
const (
	sessionAbsolute = 12 * time.Hour
	sessionIdle     = 30 * time.Minute
	// seenEvery bounds how often the idle clock is written back to the cookie.
	seenEvery = time.Minute
	// preSessionAge is how long a cookie that only carries the sign-in
	// form's CSRF token lives.
	preSessionAge = time.Hour
	// liveRefreshHeader marks requests that static/app.js sends on a live
	// event or a poll rather than a user's action: they do not keep a
	// session from going idle.
	liveRefreshHeader = "X-Live-Refresh"
)

// csrfRefused is the one answer to a forged, stale or cross-site form.
var csrfRefused = echo.NewHTTPError(http.StatusForbidden, "this form expired or came from another site; reload the page and try again")

// csrf guards the console against forged requests. Unsafe requests must come
// from the console's own origin (Sec-Fetch-Site same-origin, none or absent,
// then Origin, or Referer when Origin is absent, compared without the
// scheme's default port) and carry the token kept in the session cookie, in the
// X-CSRF-Token header (htmx) or the _csrf field. The session cookie is
// signed and encrypted, so unlike a double-submit cookie a sibling subdomain
// cannot plant a token it knows. Before sign-in the session holds only the
// token (a pre-session, one hour), which guards the sign-in form against
// login CSRF too; signing in replaces it with a new token.
func (s *Server) csrf(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		sess, _ := s.sessions.Get(r, s.cookie)
		token, _ := sess.Values["csrf"].(string)
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			if token == "" {
				token = newCSRFToken()
				sess.Values["csrf"] = token
				if sess.IsNew {
					sess.Options.MaxAge = int(preSessionAge.Seconds())
				}
				if err := sess.Save(r, c.Response()); err != nil {
					return err
				}
			}
		default:
			if !s.sameOrigin(r) {
				return csrfRefused
			}
			sent := r.Header.Get("X-CSRF-Token")
			if sent == "" {
				sent = c.FormValue("_csrf")
			}
			if token == "" || subtle.ConstantTimeCompare([]byte(sent), []byte(token)) != 1 {
				return csrfRefused
			}
		}
		c.Set("csrf", token)
		return next(c)
	}
}

// sameOrigin reports whether an unsafe request comes from the console's own
// origin. Requests without any of the headers (not from a browser) pass on
// the token alone.
func (s *Server) sameOrigin(r *http.Request) bool {
	// "same-site" is exactly the sibling subdomain this check is for.
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		ref := r.Header.Get("Referer")
		if ref == "" {
			return true
		}
		u, err := url.Parse(ref)
		if err != nil || u.Host == "" {
			return false
		}
		origin = u.Scheme + "://" + u.Host
	}
	origin = normalOrigin(origin)
	if len(s.Origins) == 0 {
		// No configured origin (a bare web.New in tests): the request's own host.
		u, err := url.Parse(origin)
		return err == nil && u.Host == strings.ToLower(r.Host)
	}
	return slices.ContainsFunc(s.Origins, func(o string) bool { return normalOrigin(o) == origin })
}

// normalOrigin lowercases an origin and drops its scheme's default port, so
// that https://cs.example.com:443 (a proxy's or a setting's spelling) and
// https://cs.example.com (what a browser sends) are the same origin.
func normalOrigin(o string) string {
	o = strings.ToLower(strings.TrimSuffix(o, "/"))
	switch {
	case strings.HasPrefix(o, "https://"):
		return strings.TrimSuffix(o, ":443")
	case strings.HasPrefix(o, "http://"):
		return strings.TrimSuffix(o, ":80")
	}
	return o
}

func newCSRFToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// sessionUser returns the signed-in user, or nil. The cookie carries the
// user's session version: a logout or a disable bumps it in the database and
// every outstanding cookie stops working at once. With touch, the request
// counts as activity for the idle limit.
func (s *Server) sessionUser(c echo.Context, touch bool) (*store.User, *sessions.Session) {
	sess, err := s.sessions.Get(c.Request(), s.cookie)
	if err != nil || sess.IsNew {
		return nil, sess
	}
	uid, _ := sess.Values["uid"].(int64)
	ver, _ := sess.Values["ver"].(int)
	issued, _ := sess.Values["issued"].(int64)
	seen, _ := sess.Values["seen"].(int64)
	now := s.Now()
	if uid == 0 || now.Sub(time.Unix(issued, 0)) > sessionAbsolute || now.Sub(time.Unix(seen, 0)) > sessionIdle {
		return nil, sess
	}
	u, err := store.UserGet(c.Request().Context(), s.Pool, uid)
	if err != nil || u.Disabled || u.SessionVersion != ver {
		return nil, sess
	}
	if touch && now.Sub(time.Unix(seen, 0)) > seenEvery {
		sess.Values["seen"] = now.Unix()
		_ = sess.Save(c.Request(), c.Response())
	}
	return u, sess
}

// requireUser lets signed-in users through and sends others to sign in.
func (s *Server) requireUser(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		// Live refreshes and the event stream are the page's doing, not the
		// user's: they must not hold an unattended session open.
		live := c.Request().Header.Get(liveRefreshHeader) != "" || c.Request().URL.Path == "/events"
		u, _ := s.sessionUser(c, !live)
		if u == nil {
			if c.Request().Header.Get("HX-Request") == "true" || c.Request().URL.Path == "/events" {
				c.Response().Header().Set("HX-Redirect", "/login")
				return c.NoContent(http.StatusUnauthorized)
			}
			return c.Redirect(http.StatusSeeOther, loginURL(c.Request()))
		}
		c.Set("user", u)
		return next(c)
	}
}

func currentUser(c echo.Context) *store.User {
	u, _ := c.Get("user").(*store.User)
	return u
}

// actorOf is the signed-in user as the engine knows a decider: by email,
// with the user's one role.
func actorOf(u *store.User) workflow.Actor {
	return workflow.Actor{Name: u.Email, Roles: []vocab.Role{u.Role}}
}

// handleLoginPage handles the "GET /login" route.
func (s *Server) handleLoginPage(c echo.Context) error {
	next := safeNext(c.QueryParam("next"))
	if u, _ := s.sessionUser(c, true); u != nil {
		return c.Redirect(http.StatusSeeOther, or(next, "/"))
	}
	return render(c, http.StatusOK, templates.Login(s.page(c, "Sign in", ""), "", next))
}

// handleLogin handles the "POST /login" route. A new session replaces the
// whole cookie, so nothing from before sign-in survives it.
func (s *Server) handleLogin(c echo.Context) error {
	email := strings.TrimSpace(c.FormValue("email"))
	password := c.FormValue("password")
	next := safeNext(c.FormValue("next"))
	p := s.page(c, "Sign in", "")
	if email == "" || password == "" {
		p.Error = "Enter your email and password."
		return render(c, http.StatusUnprocessableEntity, templates.Login(p, email, next))
	}
	// Refused before anything is looked up or recorded: an anonymous client
	// must not write kilobytes into the audit log with each try.
	if len(email) > account.MaxEmail || len(password) > account.MaxPassword {
		p.Error = fmt.Sprintf("That is too long: an email has at most %d characters, a password %d.", account.MaxEmail, account.MaxPassword)
		return render(c, http.StatusUnprocessableEntity, templates.Login(p, "", next))
	}
	u, err := account.SignIn(c.Request().Context(), s.Pool, email, password, c.RealIP())
	switch {
	case errors.Is(err, account.ErrInvalid):
		p.Error = "That email or password is too long."
		return render(c, http.StatusUnprocessableEntity, templates.Login(p, "", next))
	case errors.Is(err, account.ErrThrottled):
		p.Error = account.ErrThrottled.Error()
		return render(c, http.StatusTooManyRequests, templates.Login(p, email, next))
	case errors.Is(err, account.ErrBadCredentials):
		p.Error = "Wrong email or password."
		return render(c, http.StatusUnauthorized, templates.Login(p, email, next))
	case err != nil:
		return err
	}
	sess, _ := s.sessions.Get(c.Request(), s.cookie)
	now := s.Now().Unix()
	// A new CSRF token too: one seen before sign-in is worth nothing after.
	sess.Values = map[any]any{"uid": u.ID, "ver": u.SessionVersion, "issued": now, "seen": now, "csrf": newCSRFToken()}
	sess.Options.MaxAge = int(sessionAbsolute.Seconds())
	if err := sess.Save(c.Request(), c.Response()); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, or(next, "/"))
}

// loginURL is the sign-in page, told to come back to the page a GET asked
// for (a link from a notification mail lands on its review page after
// sign-in); other methods go back to the inbox.
func loginURL(r *http.Request) string {
	if r.Method != http.MethodGet {
		return "/login"
	}
	next := safeNext(r.URL.RequestURI())
	if next == "" || next == "/" {
		return "/login"
	}
	return "/login?next=" + url.QueryEscape(next)
}

// safeNext returns next when it is a path on this site, else "": it must
// start with one slash (not "//" or "/\", which browsers read as another
// host), hold no backslash or control character, and parse with no scheme
// or host. An open redirect after sign-in would lend a phishing link the
// site's name.
func safeNext(next string) string {
	if next == "" || len(next) > 2000 || next[0] != '/' || strings.HasPrefix(next, "//") {
		return ""
	}
	for _, r := range next {
		if r == '\\' || r < 0x20 || r == 0x7f {
			return ""
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") {
		return ""
	}
	return next
}

// or returns s, or def when s is empty.
func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// handleLogout handles the "POST /logout" route: it ends every session of the
// user, not just this browser's.
func (s *Server) handleLogout(c echo.Context) error {
	u := currentUser(c)
	if err := account.SignOut(c.Request().Context(), s.Pool, u, c.RealIP()); err != nil {
		return err
	}
	sess, _ := s.sessions.Get(c.Request(), s.cookie)
	sess.Values = map[any]any{}
	sess.Options.MaxAge = -1
	if err := sess.Save(c.Request(), c.Response()); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/login")
}

// requireToken authenticates API calls with a bearer token. It does not let
// the caller act yet: requireScope, on each API route, checks the token's
// scope and only then sets the user, so that a route registered without a
// scope fails closed.
func (s *Server) requireToken(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header.Get("Authorization")
		secret, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || secret == "" {
			return echo.NewHTTPError(http.StatusUnauthorized, "an Authorization: Bearer token is required (countersign token create)")
		}
		u, tok, err := account.TokenUser(c.Request().Context(), s.Pool, strings.TrimSpace(secret), s.Now())
		if errors.Is(err, account.ErrTokenRefused) {
			return echo.NewHTTPError(http.StatusUnauthorized, err.Error())
		} else if err != nil {
			return err
		}
		c.Set("token", tok)
		c.Set("tokenUser", u)
		return next(c)
	}
}

// requireScope lets an API call through when its token carries one of
// scopes; others get 403 naming the missing scope. The user's role is still
// checked by the handler, as for a person.
func requireScope(scopes ...string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			tok, _ := c.Get("token").(*store.Token)
			u, _ := c.Get("tokenUser").(*store.User)
			if tok == nil || u == nil {
				return echo.NewHTTPError(http.StatusUnauthorized, "an Authorization: Bearer token is required (countersign token create)")
			}
			if !slices.ContainsFunc(scopes, tok.Allows) {
				return echo.NewHTTPError(http.StatusForbidden,
					fmt.Sprintf("token %s lacks the %s scope this call needs", tok.PublicID, strings.Join(scopes, " or ")))
			}
			c.Set("user", u)
			return next(c)
		}
	}
}

// tokenOrSession authenticates a call with a bearer token carrying one of
// scopes (requireToken, requireScope) or, without an Authorization header,
// with the console's session and its CSRF token, as a page's own call. A
// call with neither gets the API's 401.
func (s *Server) tokenOrSession(scopes ...string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		withToken := s.requireToken(requireScope(scopes...)(next))
		withSession := s.csrf(func(c echo.Context) error {
			u, _ := s.sessionUser(c, true)
			if u == nil {
				return echo.NewHTTPError(http.StatusUnauthorized, "sign in, or send an Authorization: Bearer token (countersign token create)")
			}
			c.Set("user", u)
			return next(c)
		})
		return func(c echo.Context) error {
			if c.Request().Header.Get("Authorization") == "" {
				if _, err := c.Cookie(s.cookie); err == nil {
					return withSession(c)
				}
			}
			return withToken(c)
		}
	}
}
