package web

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/dashboard"
	"github.com/countersign/countersign/templates"
)

// maxFilterName bounds a workflow or rule name in the dashboard's query.
const maxFilterName = 200

// handleDashboard handles the "GET /dashboard" route: charts of the last
// day, week or month from the metrics rollups, for every signed-in role.
func (s *Server) handleDashboard(c echo.Context) error {
	w, err := dashboard.ParseWindow(c.QueryParam("window"))
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	f := dashboard.Filter{Window: w, Workflow: c.QueryParam("workflow"), Rule: c.QueryParam("rule")}
	if len(f.Workflow) > maxFilterName || len(f.Rule) > maxFilterName {
		return echo.NewHTTPError(http.StatusBadRequest, "workflow and rule names are at most 200 bytes")
	}
	v, err := dashboard.Build(c.Request().Context(), s.Pool, f, time.Now())
	if err != nil {
		return err
	}
	return render(c, http.StatusOK, templates.Dashboard(s.page(c, "Dashboard", "dashboard"), v))
}
