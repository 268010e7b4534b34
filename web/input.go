package web

import (
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/store"
)

// cleanInput refuses a request whose path parameters, query or form values
// are not valid UTF-8 or contain NUL bytes: PostgreSQL cannot store them, and
// such input is a client's mistake, not a server fault.
func cleanInput(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		bad := func(s string) bool { return !utf8.ValidString(s) || strings.ContainsRune(s, 0) }
		for i, v := range c.ParamValues() {
			if bad(v) {
				return echo.NewHTTPError(http.StatusBadRequest, "the address contains invalid characters")
			}
			// A run, request or batch is named by uuid: an address with
			// anything else names nothing, and must not reach the database,
			// where it would abort the transaction.
			if c.ParamNames()[i] == "id" && uuidRoute(c.Path()) && !store.IsID(v) {
				return echo.NewHTTPError(http.StatusNotFound, "not found")
			}
		}
		values := c.QueryParams()
		if ct := c.Request().Header.Get(echo.HeaderContentType); strings.HasPrefix(ct, echo.MIMEApplicationForm) {
			form, err := c.FormParams()
			if err != nil {
				return echo.NewHTTPError(http.StatusBadRequest, "the form could not be read")
			}
			values = form
		}
		for k, vs := range values {
			if bad(k) {
				return echo.NewHTTPError(http.StatusBadRequest, "the request contains invalid characters")
			}
			for _, v := range vs {
				if bad(v) {
					return echo.NewHTTPError(http.StatusBadRequest, "the value of "+k+" contains invalid characters")
				}
			}
		}
		return next(c)
	}
}

// uuidRoute reports whether a route's :id names a run, request or batch
// (other resources, such as users and tokens, have numeric ids).
func uuidRoute(path string) bool {
	for _, r := range []string{"/runs/:id", "/requests/:id", "/batches/:id"} {
		if strings.Contains(path, r) {
			return true
		}
	}
	return false
}

// checkID refuses an id that is not a UUID, naming the parameter.
func checkID(name, id string) error {
	if !store.IsID(id) {
		return echo.NewHTTPError(http.StatusBadRequest, name+" must be an id")
	}
	return nil
}
