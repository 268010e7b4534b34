// Package static holds the console's CSS, scripts and vendored libraries,
// embedded in the binary. static/vendor/VERSIONS.md records where each
// vendored file came from.
package static

import "embed"

// FS is the static files, served under /static/.
//
//go:embed app.css app.js keys.js pages.css favicon.svg vendor/*.js vendor/*.css
var FS embed.FS
