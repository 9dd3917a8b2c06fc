//go:build !linux

package httpserve

import "syscall"

// unsent cannot tell on this system.
func unsent(syscall.RawConn) (int, bool) { return 0, false }
