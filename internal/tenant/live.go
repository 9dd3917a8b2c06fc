package tenant

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Live is the tenants a service runs with: a file that may change while
// the service runs (Watch reloads it), or a fixed Set. Readers take the
// current Set for each request; a reload swaps it atomically, and
// Changed's channel is closed so that open streams can check whether
// their key is still valid. A file that does not load or validate is
// rejected with an error and the running tenants stay.
type Live struct {
	path   string
	getenv func(string) string
	check  func(*Set) error
	log    *slog.Logger
	report func(error)

	cur     atomic.Pointer[Set]
	mu      sync.Mutex // serialises reloads; guards changed and last
	changed chan struct{}
	last    []byte // the file content of cur
}

// LiveOptions shape OpenLive.
type LiveOptions struct {
	// Getenv reads webhook secrets (see LoadEnv); nil reads none.
	Getenv func(string) string
	// Check, when set, validates a loaded Set further (e.g. the format of
	// webhook secrets); a file it refuses is rejected like a bad file.
	Check func(*Set) error
	// Logger receives one line per reload. Default slog.Default().
	Logger *slog.Logger
	// Report, when set, is called after every reload attempt with its
	// error (nil: applied), e.g. to count reloads in a metric.
	Report func(error)
}

// OpenLive loads the tenants file at path; Watch keeps it current.
func OpenLive(path string, o LiveOptions) (*Live, error) {
	l := &Live{path: path, getenv: o.Getenv, check: o.Check, log: o.Logger, report: o.Report, changed: make(chan struct{})}
	if l.log == nil {
		l.log = slog.Default()
	}
	b, s, err := l.load()
	if err != nil {
		return nil, err
	}
	l.cur.Store(s)
	l.last = b
	return l, nil
}

// StaticLive is a Live that always holds s.
func StaticLive(s *Set) *Live {
	l := &Live{changed: make(chan struct{})}
	l.cur.Store(s)
	return l
}

// Set returns the current tenants.
func (l *Live) Set() *Set { return l.cur.Load() }

// Changed returns a channel that is closed at the next applied reload.
func (l *Live) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

func (l *Live) load() ([]byte, *Set, error) {
	b, err := os.ReadFile(l.path)
	if err != nil {
		return nil, nil, fmt.Errorf("tenants: %w", err)
	}
	s, err := ParseEnv(b, l.getenv)
	if err == nil && l.check != nil {
		err = l.check(s)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("tenants: %s: %w", l.path, err)
	}
	return b, s, nil
}

// Reload reads the file again and applies it (a fixed Live has nothing to
// reload).
func (l *Live) Reload() error {
	if l.path == "" {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reloadLocked()
}

func (l *Live) reloadLocked() error {
	b, s, err := l.load()
	if l.report != nil {
		l.report(err)
	}
	if err != nil {
		l.log.Error("tenants file rejected; the running tenants stay", "file", l.path, "err", err)
		return err
	}
	l.cur.Store(s)
	l.last = b
	close(l.changed)
	l.changed = make(chan struct{})
	l.log.Info("tenants file reloaded", "file", l.path, "tenants", len(s.tenants))
	return nil
}

// Watch reloads the file on every value from signal and when its content
// changes (checked every interval; 0 or less: only on signal). Polling
// also sees files replaced by rename, as editors and Kubernetes config
// maps do. It returns when ctx is done.
func (l *Live) Watch(ctx context.Context, signal <-chan os.Signal, interval time.Duration) {
	if l.path == "" {
		return
	}
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-signal:
			_ = l.Reload() // logged and reported
		case <-tick:
			b, err := os.ReadFile(l.path)
			l.mu.Lock()
			if err == nil && !bytes.Equal(b, l.last) {
				_ = l.reloadLocked()
				l.last = b // a rejected content is not retried until it changes
			}
			l.mu.Unlock()
		}
	}
}
