// Package apptest runs Switchboard's real binaries as processes for
// whole-system tests: it builds them, starts them on free loopback ports,
// waits for them to be ready, and stops only the processes it started (by
// PID). Every wait is bounded.
package apptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-llm/switchboard/internal/stack"
)

// Binaries are the main packages a stack is made of, by name.
var Binaries = map[string]string{
	"devbroker":     "./cmd/devbroker",
	"modelsim":      "./cmd/modelsim",
	"topics":        "./cmd/topics",
	"ingress":       "./ingress",
	"router-worker": "./router-worker",
	"egress":        "./egress",
	"redrive":       "./cmd/redrive",
}

// Build compiles the named binaries (keys of Binaries) into dir and returns
// their paths by name.
func Build(dir string, names ...string) (map[string]string, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	paths := map[string]string{}
	for _, n := range names {
		pkg, ok := Binaries[n]
		if !ok {
			return nil, fmt.Errorf("apptest: unknown binary %q", n)
		}
		args = append(args, pkg)
		paths[n] = filepath.Join(dir, filepath.Base(pkg))
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("apptest: go build: %w\n%s", err, out)
	}
	return paths, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("apptest: go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("apptest: not inside the module")
	}
	return filepath.Dir(mod), nil
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Proc is a started binary: one Start started, or a process of a Stack
// (whose launcher then starts, stops and kills it by name).
type Proc struct {
	Name string
	st   *stack.Stack
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error // set before done is closed
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// CursorSecret is the cursor secret (SWITCHBOARD_CURSOR_SECRET) of every
// egress a test starts, unless the environment sets one: a cursor made by
// one egress resumes on another, as in a deployment.
const CursorSecret = "apptest-cursor-secret"

// processEnv is the environment of the processes tests start: this one's,
// with the cursor secret.
func processEnv() []string {
	env := os.Environ()
	if os.Getenv("SWITCHBOARD_CURSOR_SECRET") == "" {
		env = append(env, "SWITCHBOARD_CURSOR_SECRET="+CursorSecret)
	}
	return env
}

// Start runs path with args. Its output is kept and printed when the test
// fails; at cleanup a still-running process gets SIGTERM, then SIGKILL
// after 10 seconds.
func Start(t testing.TB, name, path string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Env = processEnv()
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	p.cmd.WaitDelay = 5 * time.Second // a child it leaves behind holding the output must not hold Wait
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if err := p.Stop(10 * time.Second); err != nil {
			t.Logf("%s: %v", p.Name, err)
		}
		if t.Failed() {
			t.Logf("---- %s output ----\n%s", name, tail(p.out.String(), 6000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// Output returns what the process has printed so far.
func (p *Proc) Output() string { return p.out.String() }

// PID returns the process ID.
func (p *Proc) PID() int {
	if p.st != nil {
		return p.st.PIDs()[p.Name]
	}
	return p.cmd.Process.Pid
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	if p.st != nil {
		return p.st.PIDs()[p.Name] == 0
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM and waits up to timeout for the process to exit (then
// kills it). It returns the process's exit error (nil for status 0).
func (p *Proc) Stop(timeout time.Duration) error {
	if p.st != nil {
		if p.Exited() {
			return nil
		}
		return p.st.Stop(p.Name, timeout)
	}
	if p.Exited() {
		return p.err
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not exit within %v of SIGTERM", p.Name, timeout)
	}
}

// Kill ends the process with SIGKILL and waits for it.
func (p *Proc) Kill() {
	if p.st != nil {
		_ = p.st.Kill(p.Name)
		return
	}
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Wait polls check every 50ms until it returns nil or timeout passes.
func Wait(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitHTTP waits until url answers 200 (stack.WaitHTTP).
func WaitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	return stack.WaitHTTP(ctx, url, timeout)
}

// WaitFile waits until path exists with content and returns the content.
func WaitFile(path string, timeout time.Duration) (string, error) {
	var content string
	err := Wait(timeout, func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(b)) == 0 {
			return errors.New(path + " is empty")
		}
		content = strings.TrimSpace(string(b))
		return nil
	})
	return content, err
}
