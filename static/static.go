// Package static holds the console's CSS, scripts and vendored libraries,
// embedded in the binary. static/vendor/VERSIONS.md records where each
// vendored file came from.
package static

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
)

// FS is the static files, served under /static/.
//
//go:embed app.css app.js keys.js pages.css favicon.svg vendor/*.js vendor/*.css
var FS embed.FS

// versions maps each file's path in FS to the first 12 hex digits of its
// content's SHA-256, computed once.
var versions = func() map[string]string {
	out := map[string]string{}
	_ = fs.WalkDir(FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := FS.ReadFile(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[path] = hex.EncodeToString(sum[:])[:12]
		return nil
	})
	return out
}()

// URL is the address pages link a static file by: its path under /static/
// with its content's hash as ?v=. Any change to the file changes the URL,
// so a browser may keep what it fetched for good (see Versioned) and need
// not ask again on every page, as it did for files without validators.
func URL(path string) string {
	return "/static/" + path + "?v=" + versions[path]
}

// Versioned reports whether v is the hash URL gives path today: the answer
// may then be cached as immutable. An old or missing v is served as before,
// without that promise.
func Versioned(path, v string) bool {
	h, ok := versions[path]
	return ok && v != "" && v == h
}
