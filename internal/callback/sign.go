package callback

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"
)

// Header names of a delivery.
const (
	HeaderEvent     = "Countersign-Event"
	HeaderDelivery  = "Countersign-Delivery"
	HeaderSignature = "Countersign-Signature"
)

// SecretText is a callback secret as it is shown to the token's owner: 64
// hex digits. The HMAC key is this text, so that a receiver pastes it as is.
func SecretText(secret []byte) string { return hex.EncodeToString(secret) }

// Sign returns the Countersign-Signature header for body sent at t:
// t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>.<body>")>, where key is
// SecretText(secret). The time is signed with the body so that a receiver
// can refuse a replayed request by its age.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(SecretText(secret)))
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}
