package web

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/templates"
	"github.com/countersign/countersign/vocab"
)

// deliveriesPage is how many deliveries a page lists.
const deliveriesPage = 100

// deliveryID reads the :id of a delivery route; anything but a positive
// number is no delivery.
func deliveryID(c echo.Context) (int64, error) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, echo.NewHTTPError(http.StatusNotFound, "there is no such delivery")
	}
	return id, nil
}

// handleDeliveries handles the "GET /admin/deliveries" route: newest
// first, optionally only one status, a page of deliveriesPage before the
// delivery ?before=<id>.
func (s *Server) handleDeliveries(c echo.Context) error {
	ctx := c.Request().Context()
	v := templates.DeliveriesView{Status: vocab.DeliveryStatus(c.QueryParam("status")), Statuses: vocab.DeliveryStatuses()}
	if v.Status != "" && !v.Status.Valid() {
		return echo.NewHTTPError(http.StatusBadRequest, "status must be one of "+vocab.Join(v.Statuses, ", "))
	}
	p := store.DeliveryListParams{Status: v.Status, Limit: deliveriesPage + 1}
	if b := c.QueryParam("before"); b != "" {
		id, err := strconv.ParseInt(b, 10, 64)
		if err != nil || id <= 0 {
			return echo.NewHTTPError(http.StatusBadRequest, "before must be a delivery id")
		}
		d, err := store.DeliveryGet(ctx, s.Pool, id)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return echo.NewHTTPError(http.StatusBadRequest, "before must be a delivery id")
			}
			return err
		}
		p.BeforeAt, p.BeforeID = &d.CreatedAt, &d.ID
	}
	ds, err := store.DeliveryList(ctx, s.Pool, p)
	if err != nil {
		return err
	}
	if len(ds) > deliveriesPage {
		ds = ds[:deliveriesPage]
		v.Older = ds[len(ds)-1].ID
	}
	v.Deliveries = ds
	return render(c, http.StatusOK, templates.Deliveries(s.page(c, "Callback deliveries", "deliveries"), v))
}

// handleDelivery handles the "GET /admin/deliveries/:id" route.
func (s *Server) handleDelivery(c echo.Context) error {
	ctx := c.Request().Context()
	id, err := deliveryID(c)
	if err != nil {
		return err
	}
	d, err := store.DeliveryGet(ctx, s.Pool, id)
	if errors.Is(err, store.ErrNotFound) {
		return echo.NewHTTPError(http.StatusNotFound, "there is no such delivery")
	}
	if err != nil {
		return err
	}
	attempts, err := store.AttemptList(ctx, s.Pool, id)
	if err != nil {
		return err
	}
	p := s.page(c, "Delivery "+strconv.FormatInt(id, 10), "deliveries")
	if c.QueryParam("redelivered") != "" && d.Status != vocab.DeliveryFailed {
		p.Flash = "The delivery is queued to be sent again."
	}
	return render(c, http.StatusOK, templates.Delivery(p, templates.DeliveryView{Delivery: d, Attempts: attempts}))
}

// handleRedeliver handles the "POST /admin/deliveries/:id/redeliver" route:
// a failed delivery becomes pending with a new job. Any other is 409, and
// nothing changes.
func (s *Server) handleRedeliver(c echo.Context) error {
	id, err := deliveryID(c)
	if err != nil {
		return err
	}
	if s.Callbacks == nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "callbacks are not configured in this process")
	}
	ctx := c.Request().Context()
	if err := s.Callbacks.Redeliver(ctx, id); errors.Is(err, store.ErrNotFound) {
		if _, gerr := store.DeliveryGet(ctx, s.Pool, id); errors.Is(gerr, store.ErrNotFound) {
			return echo.NewHTTPError(http.StatusNotFound, "there is no such delivery")
		}
		return echo.NewHTTPError(http.StatusConflict, "only a failed delivery can be sent again")
	} else if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/admin/deliveries/"+strconv.FormatInt(id, 10)+"?redelivered=1")
}
