package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-llm/switchboard/internal/apptest"
)

// TestEgressFailover runs two egress processes with clients on either;
// one is killed (SIGKILL) mid-stream, and its clients reconnect to the
// other with Last-Event-ID: every client gets each answer exactly once and
// in order, chunks included.
func TestEgressFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	egressFailover(t, apptest.StackOptions{})
}

// egressFailover is TestEgressFailover on a stack shaped by base.
func egressFailover(t *testing.T, base apptest.StackOptions) {
	// Slow enough answers that every answer streams several chunks and
	// the kill lands mid-conversation.
	base.ModelLatency = 150 * time.Millisecond
	s := apptest.StartStack(t, bin, base)
	port, adminPort := apptest.FreePort(t), apptest.FreePort(t)
	egressB := fmt.Sprintf("http://127.0.0.1:%d", port)
	procB := apptest.Start(t, "egress-b", bin["egress"], append([]string{"--addr", fmt.Sprintf("127.0.0.1:%d", port),
		"--admin-addr", fmt.Sprintf("127.0.0.1:%d", adminPort), "--brokers", s.Brokers, "--tenants", s.TenantsFile}, s.TopicArgs()...)...)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := apptest.WaitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort), time.Minute); err != nil {
		t.Fatal(err)
	}

	const convs = 6
	killed := make(chan struct{})
	recv := make([]*received, convs)
	reconnects := make([]int, convs)
	resumed := make([]int, convs) // events received after a reconnect
	var readers, connected sync.WaitGroup
	for c := range convs {
		recv[c] = &received{}
		home := s.EgressURL // even conversations read from egress A (killed), odd from B
		if c%2 == 1 {
			home = egressB
		}
		readers.Add(1)
		connected.Add(1)
		go func() {
			defer readers.Done()
			once := sync.OnceFunc(connected.Done)
			defer once()
			base, last := home, ""
			for attempt := 0; attempt < 5; attempt++ {
				url := fmt.Sprintf("%s/v1/conversations/%s/events", base, convID(c))
				done := false
				err := apptest.ReadSSE(ctx, url, last, once, func(ev apptest.Event) bool {
					if ev.Name == "end" {
						return false
					}
					last = ev.ID
					if base != home {
						resumed[c]++
					}
					done = recv[c].add(ev)
					return !done
				})
				if done || ctx.Err() != nil {
					return
				}
				// The stream broke: wait for the kill, then go to B.
				select {
				case <-killed:
				case <-ctx.Done():
					return
				}
				t.Logf("conversation %d: stream from %s ended (%v); resuming from %q on egress B", c, base, err, last)
				base = egressB
				reconnects[c]++
			}
			t.Errorf("conversation %d: gave up after 5 connections", c)
		}()
	}
	connected.Wait()

	sentBy := make([][]sent, convs)
	var senders sync.WaitGroup
	for c := range convs {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for i := range perConversation {
				if i == perConversation/2 {
					// The second half goes after the kill, so every
					// conversation on egress A has answers to resume.
					select {
					case <-killed:
					case <-ctx.Done():
						return
					}
				}
				ack, err := postMessage(ctx, s.IngressURL, convID(c), fmt.Sprintf(`{"model":"sim","stream":true,"max_tokens":32,"messages":[{"role":"user","content":"failover %d message %d"}],"metadata":{"seq":"%d"}}`, c, i, i))
				if err != nil {
					t.Errorf("conversation %d message %d: %v", c, i, err)
					return
				}
				sentBy[c] = append(sentBy[c], sent{requestID: ack.RequestID, stream: true})
			}
		}()
	}

	// Kill egress A once every conversation has had a few answers (the
	// first half is sent by then; the rest waits for the kill).
	err := apptest.Wait(2*time.Minute, func() error {
		for c := range convs {
			if n := recv[c].count(); n < 3 {
				return fmt.Errorf("conversation %d has %d answers", c, n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Egress.Kill()
	close(killed)

	senders.Wait()
	readers.Wait()
	for c := range convs {
		if c%2 == 0 && (reconnects[c] != 1 || resumed[c] == 0) {
			t.Errorf("conversation %d (on the killed egress) reconnected %d times and got %d events after, want 1 and some", c, reconnects[c], resumed[c])
		}
		if c%2 == 1 && reconnects[c] != 0 {
			t.Errorf("conversation %d (on egress B) reconnected %d times, want 0", c, reconnects[c])
		}
		checkConversation(t, c, recv[c].snapshot(), sentBy[c])
	}
	if err := procB.Stop(30 * time.Second); err != nil {
		t.Errorf("egress B: stop: %v", err)
	}
}
