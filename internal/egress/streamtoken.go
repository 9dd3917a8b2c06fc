package egress

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/tenant"
)

// Stream tokens let a browser open a stream without holding an API key:
// the application's server asks egress for a token (POST
// /v1/stream-tokens with its key), bound to its tenant, to a few
// conversations and to an expiry, and hands it to the page, which opens
// the stream with ?token= (EventSource cannot set headers) or, for a
// WebSocket, the subprotocol "switchboard.token.TOKEN". A token is
// "st1." + base64url(payload) + "." + base64url(HMAC-SHA256(payload)),
// keyed from the cursor secret, so every egress instance that shares it
// accepts the tokens of the others. It carries a tag of the key that made
// it: removing the key from the tenants file revokes its tokens too.
const (
	streamTokenPrefix = "st1."
	// maxStreamTokenLen bounds the text a client may hand over as a token.
	maxStreamTokenLen = 4096
	// maxTokenConversations bounds the conversations of one token.
	maxTokenConversations = 16
	defaultTokenTTL       = 5 * time.Minute
	maxTokenTTL           = time.Hour
	// tokenProtocolPrefix is the WebSocket subprotocol that carries a token.
	tokenProtocolPrefix = "switchboard.token."
)

// streamToken is what a token grants.
type streamToken struct {
	tenant  string
	keyTag  [8]byte
	expires time.Time // to the second
	convs   []string
}

// allows reports whether t opens conversation conv at now.
func (t streamToken) allows(conv string, now time.Time) bool {
	return now.Before(t.expires) && slices.Contains(t.convs, conv)
}

// tokenCodec signs and checks stream tokens.
type tokenCodec struct{ key []byte }

func newTokenCodec(secret []byte) (*tokenCodec, error) {
	if len(secret) == 0 {
		return nil, errors.New("stream token secret is empty")
	}
	key, err := hkdf.Key(sha256.New, secret, nil, "switchboard egress stream token v1", 32)
	if err != nil {
		return nil, err
	}
	return &tokenCodec{key: key}, nil
}

func (c *tokenCodec) sign(payload []byte) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write(payload)
	return m.Sum(nil)
}

// seal returns t as a token.
func (c *tokenCodec) seal(t streamToken) string {
	p := binary.BigEndian.AppendUint64(nil, uint64(t.expires.Unix()))
	p = append(p, t.keyTag[:]...)
	p = appendString(p, t.tenant)
	p = binary.AppendUvarint(p, uint64(len(t.convs)))
	for _, conv := range t.convs {
		p = appendString(p, conv)
	}
	enc := base64.RawURLEncoding
	return streamTokenPrefix + enc.EncodeToString(p) + "." + enc.EncodeToString(c.sign(p))
}

func appendString(p []byte, s string) []byte {
	return append(binary.AppendUvarint(p, uint64(len(s))), s...)
}

var errBadToken = errors.New("the stream token is not valid")

// open checks a token's signature and returns what it grants.
func (c *tokenCodec) open(s string) (streamToken, error) {
	body, ok := strings.CutPrefix(s, streamTokenPrefix)
	if !ok || len(s) > maxStreamTokenLen {
		return streamToken{}, errBadToken
	}
	p64, mac64, ok := strings.Cut(body, ".")
	enc := base64.RawURLEncoding.Strict()
	p, err1 := enc.DecodeString(p64)
	mac, err2 := enc.DecodeString(mac64)
	// base64 skips line breaks: refuse them so a token has one spelling.
	if !ok || err1 != nil || err2 != nil || strings.ContainsAny(body, "\r\n") || !hmac.Equal(mac, c.sign(p)) {
		return streamToken{}, errBadToken
	}
	var t streamToken
	if len(p) < 16 {
		return streamToken{}, errBadToken
	}
	t.expires = time.Unix(int64(binary.BigEndian.Uint64(p)), 0)
	t.keyTag = [8]byte(p[8:16])
	p = p[16:]
	var n uint64
	t.tenant, p, ok = readString(p)
	if ok {
		n, p, ok = readUvarint(p)
	}
	for i := uint64(0); ok && i < n && i < maxTokenConversations; i++ {
		var conv string
		if conv, p, ok = readString(p); ok {
			t.convs = append(t.convs, conv)
		}
	}
	if !ok || len(p) != 0 || uint64(len(t.convs)) != n {
		return streamToken{}, errBadToken // signed by us, so not expected
	}
	return t, nil
}

func readUvarint(p []byte) (uint64, []byte, bool) {
	v, n := binary.Uvarint(p)
	if n <= 0 {
		return 0, nil, false
	}
	return v, p[n:], true
}

func readString(p []byte) (string, []byte, bool) {
	n, p, ok := readUvarint(p)
	if !ok || n > uint64(len(p)) {
		return "", nil, false
	}
	return string(p[:n]), p[n:], true
}

// tokenRequest is the body of POST /v1/stream-tokens.
type tokenRequest struct {
	ConversationIDs []string `json:"conversation_ids"`
	TTLSeconds      int      `json:"ttl_seconds"`
}

// handleStreamToken serves POST /v1/stream-tokens: with an API key in the
// Authorization header (never a token, never the URL), it returns a token
// for the key's tenant and the conversations asked for.
func (e *Egress) handleStreamToken(w http.ResponseWriter, r *http.Request) {
	if e.tenants == nil {
		httpError(w, http.StatusNotFound, "not_found", "egress runs without API keys (--allow-anonymous): streams need no token")
		return
	}
	key := tenant.BearerToken(r.Header.Get("Authorization"))
	t, err := e.tenants.Set().Authenticate(key)
	if err != nil {
		code, msg := authError(err)
		e.unauthorized(w, code, msg)
		return
	}
	var req tokenRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "invalid_json", "the body must be {\"conversation_ids\":[...],\"ttl_seconds\":N}: "+err.Error())
		return
	}
	ttl := time.Duration(req.TTLSeconds) * time.Second
	switch {
	case len(req.ConversationIDs) == 0 || len(req.ConversationIDs) > maxTokenConversations:
		httpError(w, http.StatusBadRequest, "invalid_request", "conversation_ids: give 1 to 16 conversation IDs")
		return
	case req.TTLSeconds < 0 || ttl > maxTokenTTL:
		httpError(w, http.StatusBadRequest, "invalid_request", "ttl_seconds: 0 (the default, 300) to 3600")
		return
	case ttl == 0:
		ttl = defaultTokenTTL
	}
	for _, conv := range req.ConversationIDs {
		if !envelope.ValidConversationID(conv) {
			httpError(w, http.StatusBadRequest, "invalid_request", "conversation_ids: "+conv+" is not a valid conversation ID")
			return
		}
	}
	expires := time.Now().Add(ttl).Truncate(time.Second)
	tok := e.tokens.seal(streamToken{tenant: t.Name, keyTag: tenant.KeyTag(key), expires: expires, convs: slices.Compact(slices.Sorted(slices.Values(req.ConversationIDs)))})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]string{"token": tok, "expires_at": expires.UTC().Format(time.RFC3339)})
}
