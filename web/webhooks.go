package web

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/notice/webhook"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/templates"
)

// handleWebhooks handles the "GET /admin/webhooks" route.
func (s *Server) handleWebhooks(c echo.Context) error {
	return s.renderWebhooks(c, http.StatusOK, templates.WebhooksView{}, "", "")
}

func (s *Server) renderWebhooks(c echo.Context, status int, v templates.WebhooksView, flash, problem string) error {
	if s.Webhooks == nil {
		return echo.NewHTTPError(http.StatusNotFound, "webhooks are not available in this process")
	}
	var err error
	if v.Webhooks, err = s.Webhooks.List(c.Request().Context()); err != nil {
		return err
	}
	p := s.page(c, "Webhooks", "webhooks")
	p.Flash, p.Error = flash, forPeople(problem)
	return render(c, status, templates.Webhooks(p, v))
}

// handleWebhookCreate handles the "POST /admin/webhooks" route. The answer
// shows the subscription's secret, once, so it must not be cached (every
// console answer is no-store).
func (s *Server) handleWebhookCreate(c echo.Context) error {
	if s.Webhooks == nil {
		return echo.NewHTTPError(http.StatusNotFound, "webhooks are not available in this process")
	}
	form, err := c.FormParams()
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "the form could not be read")
	}
	u := strings.TrimSpace(form.Get("url"))
	events := form["event"]
	if len(events) > 50 {
		return echo.NewHTTPError(http.StatusBadRequest, "too many events")
	}
	created, err := s.Webhooks.Create(c.Request().Context(), u, events, currentUser(c).Email)
	if errors.Is(err, webhook.ErrInvalid) {
		msg := strings.TrimPrefix(err.Error(), webhook.ErrInvalid.Error()+": ")
		return s.renderWebhooks(c, http.StatusUnprocessableEntity, templates.WebhooksView{FormURL: u, FormEvents: events}, "", msg)
	}
	if err != nil {
		return err
	}
	return s.renderWebhooks(c, http.StatusCreated, templates.WebhooksView{Created: created.Webhook, Secret: created.Secret}, "", "")
}

// handleWebhookDelete handles the "POST /admin/webhooks/:id/delete" route.
func (s *Server) handleWebhookDelete(c echo.Context) error {
	if s.Webhooks == nil {
		return echo.NewHTTPError(http.StatusNotFound, "webhooks are not available in this process")
	}
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return echo.NewHTTPError(http.StatusNotFound, "not found")
	}
	if err := s.Webhooks.Delete(c.Request().Context(), id, currentUser(c).Email); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return echo.NewHTTPError(http.StatusNotFound, "not found")
		}
		return err
	}
	return s.renderWebhooks(c, http.StatusOK, templates.WebhooksView{}, fmt.Sprintf("Subscription %d is deleted; nothing more is sent to it.", id), "")
}
