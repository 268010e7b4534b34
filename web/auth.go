package web

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/sessions"
	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/templates"
)

// Session lifetimes: a session ends 12 hours after sign-in, or after 30
// minutes without a request, whichever comes first.
const (
	sessionAbsolute = 12 * time.Hour
	sessionIdle     = 30 * time.Minute
	// seenEvery bounds how often the idle clock is written back to the cookie.
	seenEvery = time.Minute
)

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
		u, _ := s.sessionUser(c, true)
		if u == nil {
			if c.Request().Header.Get("HX-Request") == "true" || c.Request().URL.Path == "/events" {
				c.Response().Header().Set("HX-Redirect", "/login")
				return c.NoContent(http.StatusUnauthorized)
			}
			return c.Redirect(http.StatusSeeOther, "/login")
		}
		c.Set("user", u)
		return next(c)
	}
}

func currentUser(c echo.Context) *store.User {
	u, _ := c.Get("user").(*store.User)
	return u
}

// handleLoginPage handles the "GET /login" route.
func (s *Server) handleLoginPage(c echo.Context) error {
	if u, _ := s.sessionUser(c, true); u != nil {
		return c.Redirect(http.StatusSeeOther, "/")
	}
	return render(c, http.StatusOK, templates.Login(s.page(c, "Sign in", ""), ""))
}

// handleLogin handles the "POST /login" route. A new session replaces the
// whole cookie, so nothing from before sign-in survives it.
func (s *Server) handleLogin(c echo.Context) error {
	email := strings.TrimSpace(c.FormValue("email"))
	password := c.FormValue("password")
	p := s.page(c, "Sign in", "")
	if email == "" || password == "" {
		p.Error = "Enter your email and password."
		return render(c, http.StatusUnprocessableEntity, templates.Login(p, email))
	}
	u, err := account.SignIn(c.Request().Context(), s.Pool, email, password, c.RealIP())
	switch {
	case errors.Is(err, account.ErrThrottled):
		p.Error = account.ErrThrottled.Error()
		return render(c, http.StatusTooManyRequests, templates.Login(p, email))
	case errors.Is(err, account.ErrBadCredentials):
		p.Error = "Wrong email or password."
		return render(c, http.StatusUnauthorized, templates.Login(p, email))
	case err != nil:
		return err
	}
	sess, _ := s.sessions.Get(c.Request(), s.cookie)
	now := s.Now().Unix()
	sess.Values = map[any]any{"uid": u.ID, "ver": u.SessionVersion, "issued": now, "seen": now}
	sess.Options.MaxAge = int(sessionAbsolute.Seconds())
	if err := sess.Save(c.Request(), c.Response()); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/")
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

// requireScope lets an API call through when its token carries scope; others
// get 403 naming the missing scope. The user's role is still checked by the
// handler, as for a person.
func requireScope(scope string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			tok, _ := c.Get("token").(*store.Token)
			u, _ := c.Get("tokenUser").(*store.User)
			if tok == nil || u == nil {
				return echo.NewHTTPError(http.StatusUnauthorized, "an Authorization: Bearer token is required (countersign token create)")
			}
			if !tok.Allows(scope) {
				return echo.NewHTTPError(http.StatusForbidden,
					fmt.Sprintf("token %s lacks the %s scope this call needs", tok.PublicID, scope))
			}
			c.Set("user", u)
			return next(c)
		}
	}
}
