package web

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// timeCursor is the keyset position of the lists ordered newest first by
// creation time (runs and requests).
type timeCursor struct {
	T  time.Time `json:"t"`
	ID string    `json:"id"`
}

// nextTimeCursor is the "next" cursor after a row created at t with id.
func nextTimeCursor(t time.Time, id string) string { return encodeCursor(timeCursor{t, id}) }

// encodeCursor makes an opaque page cursor from a keyset position.
func encodeCursor(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// readAfter reads the "after" query parameter, when there is one, into cur,
// whose row id id points at, and reports whether there was. A malformed
// cursor or one whose id is not a uuid is the client's mistake (400), found
// before anything reaches the database.
func readAfter(c echo.Context, cur any, id *string) (bool, error) {
	s := c.QueryParam("after")
	if s == "" {
		return false, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, cur)
	}
	if err != nil {
		return false, echo.NewHTTPError(http.StatusBadRequest, "the page cursor is malformed")
	}
	if err := checkID("the page cursor", *id); err != nil {
		return false, err
	}
	return true, nil
}
