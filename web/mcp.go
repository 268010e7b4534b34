package web

import (
	"context"
	"errors"
	"fmt"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/ask"
	"github.com/countersign/countersign/internal/mcpserver"
)

// handleMCP serves the "/mcp" route (every method): the MCP server of
// internal/mcpserver. It authenticates like the API, with a bearer token
// (scope approvals:write) and never a session cookie, so it sits outside
// the console's CSRF check.
func (s *Server) handleMCP() echo.HandlerFunc {
	return echo.WrapHandler(mcpserver.Handler(s.Ask, s.mcpCaller, s.Logger))
}

// mcpCaller is requireToken's check for MCP: the token's user as the
// approvals service's caller.
func (s *Server) mcpCaller(ctx context.Context, secret string) (ask.Caller, error) {
	u, tok, err := account.TokenUser(ctx, s.Pool, secret, s.Now())
	if errors.Is(err, account.ErrTokenRefused) {
		return ask.Caller{}, fmt.Errorf("%w: %v", mcpserver.ErrRefused, err)
	} else if err != nil {
		return ask.Caller{}, err
	}
	return ask.Caller{UserID: u.ID, Email: u.Email, Role: u.Role, TokenID: tok.PublicID,
		Scopes: append([]string{}, tok.Scopes...)}, nil
}
