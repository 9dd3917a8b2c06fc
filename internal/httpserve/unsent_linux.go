package httpserve

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// unsent reads SIOCOUTQ: the bytes in the socket's send queue not yet
// acknowledged by the peer.
func unsent(raw syscall.RawConn) (n int, ok bool) {
	err := raw.Control(func(fd uintptr) {
		v, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
		if err == nil {
			n, ok = v, true
		}
	})
	return n, ok && err == nil
}
