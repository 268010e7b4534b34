package web_test

import (
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// TestBrowserDashboard draws the dashboard at 1280 and 390 px: the charts
// fit the viewport (no sideways scroll), two columns on a desktop and one on
// a phone, and a chart's numbers open from the keyboard.
func TestBrowserDashboard(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	seedMetrics(t, c)
	ctx := browser(t)
	c.signIn(ctx, t, "viewer@example.com")
	for _, tc := range []struct {
		width   int64
		columns int
	}{{1280, 2}, {390, 1}} {
		var svgWidth, over float64
		var columns int
		require.NoError(t, chromedp.Run(ctx, chromedp.EmulateViewport(tc.width, 900), chromedp.Navigate(c.Addr+"/dashboard"),
			chromedp.WaitVisible(`[data-testid=chart-runs] svg`, chromedp.ByQuery),
			chromedp.Evaluate(`document.querySelector('[data-testid=chart-runs] svg').getBoundingClientRect().width`, &svgWidth),
			chromedp.Evaluate(`document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth`, &over),
			chromedp.Evaluate(`getComputedStyle(document.querySelector('.charts')).gridTemplateColumns.split(' ').length`, &columns)))
		require.Zero(t, over, "scrolls sideways at %d px", tc.width)
		require.Greater(t, svgWidth, 200.0, "chart drawn at %d px", tc.width)
		require.LessOrEqual(t, svgWidth, float64(tc.width))
		require.Equal(t, tc.columns, columns, "columns at %d px", tc.width)
	}
	// The numbers behind a chart open with the keyboard.
	var open bool
	require.NoError(t, chromedp.Run(ctx, chromedp.Focus(`[data-testid=chart-runs] summary`, chromedp.ByQuery),
		chromedp.KeyEvent("\r"),
		chromedp.Evaluate(`document.querySelector('[data-testid=chart-runs] details').open`, &open)))
	require.True(t, open)
}
