package webhook

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Webhook request headers. The first three are Standard Webhooks'
// (https://www.standardwebhooks.com), so its verifier libraries check our
// deliveries as they are.
const (
	// HeaderID identifies the delivery: the result's request ID, the same
	// on every retry and for a repeated answer, so receivers drop repeats
	// by it.
	HeaderID = "webhook-id"
	// HeaderTimestamp is the try's Unix time in seconds, as signed.
	HeaderTimestamp = "webhook-timestamp"
	// HeaderSignature is "v1," and the base64 HMAC-SHA256, keyed with the
	// tenant's signing key, of the ID, ".", the timestamp, "." and the body.
	HeaderSignature = "webhook-signature"
	// HeaderRequestID is the result's request ID.
	HeaderRequestID = "Switchboard-Request-Id"
	// HeaderDeliveryID names the result record, the same on every retry,
	// redelivery and instance, without telling its partition and offset
	// (deliveryID).
	HeaderDeliveryID = "Switchboard-Delivery-Id"
	// HeaderAttempt counts the tries of one delivery, from 1.
	HeaderAttempt = "Switchboard-Attempt"
)

// secretPrefix marks a Standard Webhooks secret: the prefix and the
// base64 of the key.
const secretPrefix = "whsec_"

// MinSecretBytes is the shortest signing secret accepted.
const MinSecretBytes = 16

// ParseSecret returns the key of a secret as configured: "whsec_" and
// base64 (the Standard Webhooks form), or any other string, whose bytes
// are the key. It must hold at least MinSecretBytes.
func ParseSecret(s string) ([]byte, error) {
	key := []byte(s)
	if rest, ok := strings.CutPrefix(s, secretPrefix); ok {
		var err error
		if key, err = base64.StdEncoding.DecodeString(rest); err != nil {
			return nil, errors.New("a whsec_ secret must continue with base64")
		}
	}
	if len(key) < MinSecretBytes {
		return nil, fmt.Errorf("a signing secret needs at least %d bytes", MinSecretBytes)
	}
	return key, nil
}

// FormatSecret returns key in the Standard Webhooks form, whsec_ and
// base64: what a receiver's verifier library takes.
func FormatSecret(key []byte) string { return secretPrefix + base64.StdEncoding.EncodeToString(key) }

// TenantKey derives tenant's signing key from the global secret with
// HKDF-SHA256 (RFC 5869; info names the purpose and the tenant), so every
// tenant has its own key without configuring one, and no tenant's key
// tells anything about another's or about the global secret.
func TenantKey(global []byte, tenant string) []byte {
	key, err := hkdf.Key(sha256.New, global, nil, "switchboard webhook signing key v1\x00"+tenant, 32)
	if err != nil {
		panic(err) // only for lengths over 255 hashes
	}
	return key
}

// Sign returns the HeaderSignature value of body delivered as id at unix
// seconds ts.
func Sign(key []byte, id string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte("."))
	mac.Write([]byte(strconv.FormatInt(ts, 10)))
	mac.Write([]byte("."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
