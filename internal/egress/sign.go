package egress

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// Webhook request headers.
const (
	// HeaderTimestamp is the delivery's Unix time in seconds, as signed.
	HeaderTimestamp = "Switchboard-Timestamp"
	// HeaderSignature is "v1=" and the hex HMAC-SHA256, keyed with the
	// tenant's webhook secret, of the timestamp, a dot and the body.
	HeaderSignature = "Switchboard-Signature"
	// HeaderRequestID is the result's request ID.
	HeaderRequestID = "Switchboard-Request-Id"
	// HeaderDeliveryID is the result's cursor (partition:offset): the same
	// on every retry of one delivery, so receivers can drop repeats.
	HeaderDeliveryID = "Switchboard-Delivery-Id"
	// HeaderAttempt counts the tries of one delivery, from 1.
	HeaderAttempt = "Switchboard-Attempt"
)

// sign returns the HeaderSignature value for body sent at unix seconds ts.
func sign(secret []byte, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(strconv.FormatInt(ts, 10)))
	mac.Write([]byte("."))
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}
