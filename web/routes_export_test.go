package web

import (
	"sort"
	"strings"

	"github.com/labstack/echo/v4"
)

// APIRoutes returns "METHOD /path" of every route under /api/, so that a test
// can check that each one is covered by its scope table.
func APIRoutes() []string {
	s := New(Deps{SessionKeys: [][]byte{make([]byte, 64)}})
	var out []string
	for _, r := range s.echo.Routes() {
		// A group registers a not-found route of its own; it serves nothing.
		if strings.HasPrefix(r.Path, "/api/") && r.Method != echo.RouteNotFound {
			out = append(out, r.Method+" "+r.Path)
		}
	}
	sort.Strings(out)
	return out
}
