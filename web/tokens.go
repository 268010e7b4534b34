package web

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/templates"
	"github.com/countersign/countersign/vocab"
)

// requireAdmin lets admins through; other signed-in users get 403.
func requireAdmin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if u := currentUser(c); u == nil || u.Role != vocab.RoleAdmin {
			return echo.NewHTTPError(http.StatusForbidden, "only admins may manage API tokens")
		}
		return next(c)
	}
}

// tokensView loads the tokens and the users a token can be made for.
func (s *Server) tokensView(c echo.Context, form templates.TokenForm) (templates.TokensView, error) {
	ctx := c.Request().Context()
	v := templates.TokensView{Form: form, Now: s.Now()}
	var err error
	if v.Tokens, err = account.ListTokens(ctx, s.Pool, ""); err != nil {
		return v, err
	}
	users, err := store.UserList(ctx, s.Pool)
	if err != nil {
		return v, err
	}
	for _, u := range users {
		if !u.Disabled {
			v.Users = append(v.Users, u)
		}
	}
	return v, nil
}

// defaultTokenForm is the creation form as first shown: the narrowest useful
// token, for 90 days.
var defaultTokenForm = templates.TokenForm{Expires: "2160h", Scopes: []string{account.ScopeRequestsRead}}

// handleTokens handles the "GET /admin/tokens" route.
func (s *Server) handleTokens(c echo.Context) error {
	v, err := s.tokensView(c, defaultTokenForm)
	if err != nil {
		return err
	}
	p := s.page(c, "API tokens", "tokens")
	// Only a handle that is in the list is echoed, so the query string
	// cannot put words on the page.
	if id := c.QueryParam("revoked"); id != "" {
		for _, t := range v.Tokens {
			if t.PublicID == id {
				p.Flash = fmt.Sprintf("Token %s is revoked; calls with it are refused from now on.", id)
			}
		}
	}
	return render(c, http.StatusOK, templates.Tokens(p, v))
}

// handleTokenCreate handles the "POST /admin/tokens" route. The answer is the
// only place the secret is ever shown, so it must not be cached.
func (s *Server) handleTokenCreate(c echo.Context) error {
	form, err := c.FormParams()
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "the form could not be read")
	}
	f := templates.TokenForm{Email: strings.TrimSpace(form.Get("email")), Name: strings.TrimSpace(form.Get("name")),
		Scopes: form["scope"], Expires: form.Get("expires")}
	var life time.Duration
	var problem error
	if f.Expires != "never" {
		life, problem = time.ParseDuration(f.Expires)
		if problem == nil && life <= 0 {
			problem = errors.New("not positive")
		}
		if problem != nil {
			problem = fmt.Errorf("%w: the expiry must be a duration such as 720h, or never", account.ErrInvalid)
		}
	}
	var tok *store.Token
	var secret string
	if problem == nil {
		tok, secret, problem = account.CreateToken(c.Request().Context(), s.Pool, account.TokenParams{
			Email: f.Email, Name: f.Name, Scopes: f.Scopes, ExpiresIn: life, By: currentUser(c).Email, Now: s.Now()})
		if errors.Is(problem, store.ErrNotFound) {
			problem = fmt.Errorf("%w: there is no user %q", account.ErrInvalid, f.Email)
		}
	}
	if problem != nil && !errors.Is(problem, account.ErrInvalid) {
		return problem
	}
	status := http.StatusCreated
	if problem != nil {
		status = http.StatusUnprocessableEntity
	} else {
		f = defaultTokenForm
	}
	v, err := s.tokensView(c, f)
	if err != nil {
		return err
	}
	v.Created, v.Secret = tok, secret
	if tok != nil {
		v.CallbackSecret = callback.SecretText(tok.CallbackSecret)
	}
	p := s.page(c, "API tokens", "tokens")
	if problem != nil {
		p.Error = strings.TrimPrefix(problem.Error(), account.ErrInvalid.Error()+": ")
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return render(c, status, templates.Tokens(p, v))
}

// handleTokenRevoke handles the "POST /admin/tokens/:id/revoke" route.
func (s *Server) handleTokenRevoke(c echo.Context) error {
	tok, err := account.RevokeToken(c.Request().Context(), s.Pool, c.Param("id"), currentUser(c).Email)
	switch {
	case errors.Is(err, account.ErrInvalid), errors.Is(err, store.ErrNotFound):
		return echo.NewHTTPError(http.StatusNotFound, "there is no such token")
	case errors.Is(err, account.ErrAlreadyRevoked):
		return echo.NewHTTPError(http.StatusConflict, err.Error())
	case err != nil:
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/admin/tokens?revoked="+tok.PublicID)
}
