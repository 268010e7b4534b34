package slack

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Headers of a request Slack signs.
const (
	HeaderSignature = "X-Slack-Signature"
	HeaderTimestamp = "X-Slack-Request-Timestamp"
)

// MaxSkew is how far a signed request's timestamp may be from now: Slack's
// own advice, and what bounds a replay.
const MaxSkew = 5 * time.Minute

// ErrBadSignature is returned for a request whose signature is missing,
// malformed, wrong, or stale.
var ErrBadSignature = errors.New("slack signature invalid")

// Sign returns the v0 signature of body sent at timestamp: "v0=" and the
// hex HMAC-SHA256, keyed with the signing secret, of "v0:<timestamp>:<body>".
func Sign(secret, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("v0:" + timestamp + ":"))
	mac.Write(body)
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a request's v0 signature (header signature) over its raw
// body and its timestamp (header timestamp, Unix seconds) within MaxSkew of
// now. The comparison takes constant time. Returns an error wrapping
// ErrBadSignature otherwise.
func Verify(secret, timestamp, signature string, body []byte, now time.Time) error {
	if secret == "" {
		return errors.Join(ErrBadSignature, errors.New("no signing secret configured"))
	}
	if timestamp == "" || len(timestamp) > 20 || !strings.HasPrefix(signature, "v0=") {
		return ErrBadSignature
	}
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(sec, 0)); d > MaxSkew || d < -MaxSkew {
		return errors.Join(ErrBadSignature, errors.New("timestamp outside five minutes"))
	}
	if !hmac.Equal([]byte(Sign(secret, timestamp, body)), []byte(signature)) {
		return ErrBadSignature
	}
	return nil
}
