package web

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

type runEventBody struct {
	Data           json.RawMessage `json:"data"`
	IdempotencyKey string          `json:"idempotency_key"`
}

// handleAPIRunEvent handles the "POST /api/v1/runs/:id/events/:name" route:
// 202 with the stored event, the same for a repeated delivery.
func (s *Server) handleAPIRunEvent(c echo.Context) error {
	u := currentUser(c)
	if u.Role == vocab.RoleViewer {
		return echo.NewHTTPError(http.StatusForbidden, "viewers cannot send events to runs")
	}
	var b runEventBody
	if c.Request().ContentLength != 0 {
		if err := decodeJSON(c, &b); err != nil {
			return err
		}
	}
	key := c.Request().Header.Get("Idempotency-Key")
	if key != "" && b.IdempotencyKey != "" && key != b.IdempotencyKey {
		return fmt.Errorf("%w: the Idempotency-Key header and the body's idempotency_key differ", workflow.ErrInvalidInput)
	}
	if key == "" {
		key = b.IdempotencyKey
	}
	ev, _, err := s.Engine.Signal(c.Request().Context(), workflow.SignalParams{RunID: c.Param("id"), Name: c.Param("name"),
		Key: key, Payload: b.Data, Actor: u.Email})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, eventOf(ev))
}
