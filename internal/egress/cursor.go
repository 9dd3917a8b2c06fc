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
	"hash"
	"math"
	"strings"
	"sync"
)

// cursor is a place in the results topic: the partition and offset of the
// last event a client has (offset -1: nothing yet). Every event of every
// transport carries one, as an opaque token (cursorCodec); a client
// resumes by handing it back.
//
// Offsets are a cluster's own: a mirrored topic (MirrorMaker 2, another
// region) holds the same records at other offsets. So a cursor also names
// its cluster (origin), the event's record timestamp (at, which mirroring
// keeps) and the event itself (ident): an egress on another cluster finds
// the client's place by those (region.go). Cursors of the first format,
// and of an egress that does not know its cluster, have none of them and
// resume on any cluster by offset.
//
// A transactional result becomes visible at its transaction's commit
// marker (package txnview), and one marker can make several results
// visible: their cursors have the marker's offset and, in held, 1 + the
// result's own offset, which orders them (0: a plain record).
type cursor struct {
	partition int32
	offset    int64
	at        int64  // the event's record timestamp, Unix milliseconds; 0: unknown
	origin    uint64 // originTag of the cluster the offset is in; 0: unknown
	ident     uint64 // eventIdent of the event; 0: unknown
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

// located reports whether c carries its cluster, time and event.
func (c cursor) located() bool { return c.at != 0 || c.origin != 0 || c.ident != 0 }

// Cursor token prefixes: their format's version. c1 holds partition and
// offset; c2 also the time, cluster and event (see cursor).
const (
	cursorPrefix   = "c1."
	cursorPrefixV2 = "c2."
)

// Plain text lengths of the two formats. Either has cursorLenHeld more
// bytes, the held offset, in the cursor of a transactional result (and
// only then, so that a position has one token).
const (
	cursorLenV1   = 12
	cursorLenV2   = 36
	cursorLenHeld = 8
)

// maxCursorLen bounds the text a client may hand back as a cursor (the
// longest, a located held cursor's, is 99 characters).
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
	aead    cipher.AEAD
	mac     []byte
	scratch sync.Pool // of *sealState
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
	k := &cursorCodec{aead: aead, mac: keys[32:]}
	k.scratch.New = func() any { return &sealState{mac: hmac.New(sha256.New, k.mac)} }
	return k, nil
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

// seal returns c's token for tenant's stream of conv: the first format
// when c is not located, so that a position has one token.
func (k *cursorCodec) seal(tenant, conv string, c cursor) string {
	st := k.scratch.Get().(*sealState) // its buffers would escape to the heap through the interfaces below
	defer k.scratch.Put(st)
	plain := st.plain[:]
	binary.BigEndian.PutUint32(plain[:4], uint32(c.partition))
	binary.BigEndian.PutUint64(plain[4:], uint64(c.offset))
	n, prefix := cursorLenV1, cursorPrefix
	if c.located() {
		binary.BigEndian.PutUint64(plain[12:], uint64(c.at))
		binary.BigEndian.PutUint64(plain[20:], c.origin)
		binary.BigEndian.PutUint64(plain[28:], c.ident)
		n, prefix = cursorLenV2, cursorPrefixV2
	}
	if c.held > 0 {
		binary.BigEndian.PutUint64(plain[n:], uint64(c.held))
		n += cursorLenHeld
	}
	st.aad = append(append(append(st.aad[:0], tenant...), 0), conv...)
	st.mac.Reset()
	st.mac.Write(st.aad)
	st.mac.Write(plain[:n])
	nonce := st.mac.Sum(st.sum[:0])[:k.aead.NonceSize()] // the nonce, then the sealed text
	out := k.aead.Seal(nonce, nonce, plain[:n], st.aad)
	st.text = base64.RawURLEncoding.AppendEncode(append(st.text[:0], prefix...), out)
	return string(st.text)
}

// sealState is one seal's scratch: an HMAC state keyed with the codec's
// MAC key and the buffers, pooled because a cursor is sealed per event.
type sealState struct {
	mac   hash.Hash
	plain [cursorLenV2 + cursorLenHeld]byte
	sum   [sha256.Size + cursorLenV2 + cursorLenHeld + 16]byte
	aad   []byte
	text  []byte
}

// errCursor is every refused cursor: the client learns only that it is not
// valid here.
var errCursor = errors.New("the cursor is not valid for this conversation (or was made by an egress with another cursor secret)")

// open returns the cursor of a token made by seal for the same tenant and
// conversation.
func (k *cursorCodec) open(tenant, conv, text string) (cursor, error) {
	want := cursorLenV1
	switch {
	case len(text) > maxCursorLen:
		return cursor{}, errCursor
	case strings.HasPrefix(text, cursorPrefix):
	case strings.HasPrefix(text, cursorPrefixV2):
		want = cursorLenV2
	default:
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
	if err != nil || (len(plain) != want && len(plain) != want+cursorLenHeld) {
		return cursor{}, errCursor
	}
	c := cursor{partition: int32(binary.BigEndian.Uint32(plain[:4])), offset: int64(binary.BigEndian.Uint64(plain[4:]))}
	if len(plain) == want+cursorLenHeld {
		// A transactional result's: held is 1 + its own offset, which
		// lies before the marker's.
		c.held = int64(binary.BigEndian.Uint64(plain[want:]))
		if c.held < 1 || c.held > c.offset {
			return cursor{}, errCursor
		}
	}
	if want == cursorLenV2 {
		c.at = int64(binary.BigEndian.Uint64(plain[12:]))
		c.origin = binary.BigEndian.Uint64(plain[20:])
		c.ident = binary.BigEndian.Uint64(plain[28:])
		if !c.located() || c.at < 0 {
			return cursor{}, errCursor
		}
	}
	if c.partition < 0 || c.offset < -1 || c.offset == math.MaxInt64 {
		return cursor{}, errCursor
	}
	return c, nil
}
