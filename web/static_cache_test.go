package web_test

import (
	"net/http"
	"testing"

	"github.com/PuerkitoBio/goquery"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/testapp"
)

// TestStaticFilesCachedByHash checks that pages link static files with their
// content's hash, which the server answers as immutable, so that a browser
// fetches no CSS or script again when the reviewer goes on to the next
// request; a file asked for with a stale hash or none is served as before,
// without that promise.
func TestStaticFilesCachedByHash(t *testing.T) {
	t.Parallel()
	b := testapp.Start(t, testapp.Options{Web: true, NoWorker: true})
	resp, err := http.Get(b.Addr + "/login")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	doc, err := goquery.NewDocumentFromReader(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	var links []string
	doc.Find(`link[rel=stylesheet], script[src]`).Each(func(_ int, s *goquery.Selection) {
		if v, ok := s.Attr("href"); ok {
			links = append(links, v)
		}
		if v, ok := s.Attr("src"); ok {
			links = append(links, v)
		}
	})
	require.Len(t, links, 7, "3 stylesheets and 4 scripts")
	for _, l := range links {
		require.Regexp(t, `^/static/[a-z0-9./-]+\?v=[0-9a-f]{12}$`, l)
		resp, err := http.Get(b.Addr + l)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, l)
		require.Equal(t, "public, max-age=31536000, immutable", resp.Header.Get("Cache-Control"), l)
	}
	for _, stale := range []string{"/static/app.js", "/static/app.js?v=000000000000"} {
		resp, err := http.Get(b.Addr + stale)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, stale)
		require.Empty(t, resp.Header.Get("Cache-Control"), "%s: not promised for good", stale)
	}
}
