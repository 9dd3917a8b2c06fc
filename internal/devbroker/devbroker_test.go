package devbroker

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // "" means valid
	}{
		{name: "zero value"},
		{name: "free ports", cfg: Config{Ports: []int{0, 0, 0}}},
		{name: "one broker", cfg: Config{Ports: []int{29092}, DataDir: "x", SyncWrites: true}},
		{name: "negative port", cfg: Config{Ports: []int{-1}}, want: "ports[0]: -1 is not a port"},
		{name: "port too large", cfg: Config{Ports: []int{1, 70000}}, want: "ports[1]: 70000 is not a port"},
		{name: "duplicate port", cfg: Config{Ports: []int{19092, 0, 19092}}, want: "ports[2]: 19092 is listed twice"},
		{name: "empty broker config key", cfg: Config{BrokerConfigs: map[string]string{"": "1"}}, want: "empty key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate: got %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate: got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := New(Config{Ports: []int{-1}}); err == nil {
		t.Errorf("New with an invalid config: got nil error")
	}
}

func TestAddrsAreLoopbackAndRunStops(t *testing.T) {
	b, err := New(Config{Ports: []int{0, 0}, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	addrs := b.Addrs()
	if len(addrs) != 2 {
		t.Fatalf("Addrs: got %v, want two", addrs)
	}
	for _, a := range addrs {
		if !strings.HasPrefix(a, "127.0.0.1:") || strings.HasSuffix(a, ":0") {
			t.Errorf("Addrs: got %q, want 127.0.0.1 with a resolved port", a)
		}
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: got %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Run did not return after its context was cancelled")
	}
	b.Close() // a second close is harmless
}

func TestPersistsAcrossRestart(t *testing.T) {
	const (
		topic   = "persisted"
		group   = "persisted-group"
		records = 10
	)
	ctx := testContext(t)
	dir := filepath.Join(t.TempDir(), "data") // created by the broker

	// First run: create a topic, produce, commit a group offset.
	b, err := New(Config{Ports: []int{0, 0, 0}, DataDir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	firstAddrs := b.Addrs()
	func() {
		cl, err := kgo.NewClient(kgo.SeedBrokers(firstAddrs...), kgo.DefaultProduceTopic(topic))
		if err != nil {
			t.Fatalf("kgo: %v", err)
		}
		defer cl.Close()
		adm := kadm.NewClient(cl)
		if _, err := adm.CreateTopic(ctx, 3, 3, nil, topic); err != nil {
			t.Fatalf("CreateTopic: %v", err)
		}
		var rs []*kgo.Record
		for i := range records {
			rs = append(rs, &kgo.Record{Key: []byte("k"), Value: []byte(strconv.Itoa(i))})
		}
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		offsets := kadm.Offsets{}
		offsets.Add(kadm.Offset{Topic: topic, Partition: rs[0].Partition, At: 7, LeaderEpoch: -1})
		resps, err := adm.CommitOffsets(ctx, group, offsets)
		if err == nil {
			err = resps.Error()
		}
		if err != nil {
			t.Fatalf("CommitOffsets: %v", err)
		}
	}()
	b.Close()

	if _, err := os.Stat(filepath.Join(dir, "meta.json")); err != nil {
		t.Errorf("data dir after Close: %v", err)
	}

	// Second run, on other free ports: everything is still there.
	b, err = New(Config{Ports: []int{0, 0, 0}, DataDir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("New again: %v", err)
	}
	defer b.Close()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(b.Addrs()...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatalf("kgo: %v", err)
	}
	defer cl.Close()

	var got []string
	for len(got) < records {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %v before timing out", got)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Errorf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	want := make([]string, records)
	for i := range want {
		want[i] = strconv.Itoa(i)
	}
	if !slices.Equal(got, want) {
		t.Errorf("records after restart: got %v, want %v", got, want)
	}

	fetched, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("FetchOffsets: %v", err)
	}
	var at int64 = -1
	fetched.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil {
			at = o.At
		}
	})
	if at != 7 {
		t.Errorf("committed offset after restart: got %d, want 7 (%v)", at, fetched)
	}
}

func TestKfakeLogger(t *testing.T) {
	tests := []struct {
		level   slog.Level // the handler's level
		kfake   kfake.LogLevel
		message string
		logged  bool
	}{
		{slog.LevelInfo, kfake.LogLevelError, "level=ERROR", true},
		{slog.LevelInfo, kfake.LogLevelWarn, "level=WARN", true},
		{slog.LevelInfo, kfake.LogLevelInfo, "", false},
		{slog.LevelDebug, kfake.LogLevelInfo, "level=DEBUG", true},
		{slog.LevelDebug, kfake.LogLevelDebug, "", false},
		{slog.LevelDebug - 4, kfake.LogLevelDebug, "level=DEBUG-4", true},
		{slog.LevelDebug - 4, kfake.LogLevelNone, "", false},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		l := kfakeLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tt.level}))}
		l.Logf(tt.kfake, "hello %s %d", "there", 7)
		out := buf.String()
		if got := out != ""; got != tt.logged {
			t.Errorf("handler %v, kfake %v: logged %v, want %v (%q)", tt.level, tt.kfake, got, tt.logged, out)
			continue
		}
		if tt.logged && (!strings.Contains(out, tt.message) || !strings.Contains(out, `msg="hello there 7"`)) {
			t.Errorf("handler %v, kfake %v: got %q, want %s and the formatted message", tt.level, tt.kfake, out, tt.message)
		}
	}
}
