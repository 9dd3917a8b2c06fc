package egress

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
)

// cursor is a place in the results topic: the partition and offset of the
// last event a client has (offset -1: nothing yet). Every event of every
// transport carries one, as an opaque token (cursorCodec); a client
// resumes by handing it back.
//
// A transactional result becomes visible at its transaction's commit
// marker (package txnview), and one marker can make several results
// visible: their cursors have the marker's offset and, in held, 1 + the
// result's own offset, which orders them (0: a plain record).
type cursor struct {
	partition int32
	offset    int64
	held      int64
}

// String is the cursor's "partition:offset" (":held" for a transactional
// result), for logs and tests; clients never see it.
func (c cursor) String() string {
	if c.held > 0 {
		return fmt.Sprintf("%d:%d:%d", c.partition, c.offset, c.held-1)
	}
	return fmt.Sprintf("%d:%d", c.partition, c.offset)
}

// cursorPrefix starts every cursor token: its format's version.
const cursorPrefix = "c1."

// maxCursorLen bounds the text a client may hand back as a cursor.
const maxCursorLen = 128

// cursorCodec seals cursors into opaque tokens that only the egress
// instances sharing the secret can open, and only for the tenant and
// conversation they were made for. The position is encrypted (AES-256-GCM)
// so that a client learns nothing about the topic's partitions and offsets,
// which would count other tenants' traffic; the nonce is derived from the
// tenant, conversation and position (HMAC-SHA256, a synthetic IV), so a
// position always gives the same token and no nonce is ever reused for two
// different plaintexts.
type cursorCodec struct {
	aead cipher.AEAD
	mac  []byte
}

// newCursorCodec derives the codec's keys from secret (HKDF-SHA256). Every
// egress instance of a deployment must have the same secret for a cursor
// to resume on any of them.
func newCursorCodec(secret []byte) (*cursorCodec, error) {
	if len(secret) == 0 {
		return nil, errors.New("cursor secret is empty")
	}
	keys, err := hkdf.Key(sha256.New, secret, nil, "switchboard egress cursor v1", 64)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(keys[:32])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &cursorCodec{aead: aead, mac: keys[32:]}, nil
}

// randomCursorSecret is the secret of an instance configured without one:
// its cursors resume only on itself, until it restarts.
func randomCursorSecret() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return b
}

func cursorAAD(tenant, conv string) []byte {
	return []byte(tenant + "\x00" + conv)
}

// seal returns c's token for tenant's stream of conv.
func (k *cursorCodec) seal(tenant, conv string, c cursor) string {
	var buf [20]byte
	binary.BigEndian.PutUint32(buf[:4], uint32(c.partition))
	binary.BigEndian.PutUint64(buf[4:12], uint64(c.offset))
	plain := buf[:12]
	if c.held > 0 {
		binary.BigEndian.PutUint64(buf[12:], uint64(c.held))
		plain = buf[:]
	}
	aad := cursorAAD(tenant, conv)
	m := hmac.New(sha256.New, k.mac)
	m.Write(aad)
	m.Write(plain)
	nonce := m.Sum(nil)[:k.aead.NonceSize()]
	out := k.aead.Seal(nonce, nonce, plain, aad)
	return cursorPrefix + base64.RawURLEncoding.EncodeToString(out)
}

// errCursor is every refused cursor: the client learns only that it is not
// valid here.
var errCursor = errors.New("the cursor is not valid for this conversation (or was made by an egress with another cursor secret)")

// open returns the cursor of a token made by seal for the same tenant and
// conversation.
func (k *cursorCodec) open(tenant, conv, text string) (cursor, error) {
	if len(text) > maxCursorLen || !strings.HasPrefix(text, cursorPrefix) {
		return cursor{}, errCursor
	}
	enc := text[len(cursorPrefix):]
	b, err := base64.RawURLEncoding.Strict().DecodeString(enc)
	ns := k.aead.NonceSize()
	// The decoder skips line breaks: only the canonical text is a token,
	// so that a position has exactly one.
	if err != nil || len(b) < ns || base64.RawURLEncoding.EncodeToString(b) != enc {
		return cursor{}, errCursor
	}
	plain, err := k.aead.Open(nil, b[:ns], b[ns:], cursorAAD(tenant, conv))
	if err != nil || (len(plain) != 12 && len(plain) != 20) {
		return cursor{}, errCursor
	}
	c := cursor{partition: int32(binary.BigEndian.Uint32(plain[:4])), offset: int64(binary.BigEndian.Uint64(plain[4:12]))}
	if len(plain) == 20 {
		// A transactional result's: held is 1 + its own offset, which
		// lies before the marker's.
		c.held = int64(binary.BigEndian.Uint64(plain[12:]))
		if c.held < 1 || c.held > c.offset {
			return cursor{}, errCursor
		}
	}
	if c.partition < 0 || c.offset < -1 || c.offset == math.MaxInt64 {
		return cursor{}, errCursor
	}
	return c, nil
}
