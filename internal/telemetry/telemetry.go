// Package telemetry gives every Switchboard binary the same logger, the
// same health and metrics endpoints, and the same OpenTelemetry tracing:
// StartTracing sets it up from the environment, and Tracing carries trace
// context through HTTP requests and Kafka records (its KafkaHooks are what
// kafkaconf installs on every client).
package telemetry

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewLogger returns a slog logger writing format ("json" or "text") at
// level ("debug", "info", "warn", "error") to w.
func NewLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "json", "":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("log format %q: want json or text", format)
	}
}

// NewRegistry returns a Prometheus registry holding the Go runtime and
// process collectors; services register their own metrics on it.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// MountPprof adds Go's profiling endpoints under /debug/pprof/. Binaries
// mount them only when asked (--pprof), since profiles reveal internals.
func MountPprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, strings.Join(RedactArgs(os.Args), "\x00"))
	})
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// RedactArgs returns args with the values of secret flags (names holding
// "password", "secret" or "token") replaced by [redacted], for
// /debug/pprof/cmdline: a password given as a flag must not be served.
func RedactArgs(args []string) []string {
	out := append([]string(nil), args...)
	secret := func(name string) bool {
		name = strings.ToLower(strings.TrimLeft(name, "-"))
		return strings.Contains(name, "password") || strings.Contains(name, "secret") || strings.Contains(name, "token")
	}
	for i := 1; i < len(out); i++ {
		a := out[i]
		if !strings.HasPrefix(a, "-") {
			continue
		}
		if name, _, ok := strings.Cut(a, "="); ok {
			if secret(name) {
				out[i] = name + "=[redacted]"
			}
			continue
		}
		if secret(a) && i+1 < len(out) && !strings.HasPrefix(out[i+1], "-") {
			out[i+1] = "[redacted]"
			i++
		}
	}
	return out
}

// Mount adds /metrics, /healthz and /readyz to mux. ready reports whether
// the service can do its work (nil: ready); /healthz only says the process
// answers.
func Mount(mux *http.ServeMux, reg *prometheus.Registry, ready func(*http.Request) error) {
	MountStatus(mux, reg, func(r *http.Request) (string, error) {
		if ready == nil {
			return "", nil
		}
		return "", ready(r)
	})
}

// MountStatus is Mount with a readiness check that also describes the
// service's state (e.g. the partitions a group member holds): /readyz
// answers 200 "ready" or 503 "not ready: <err>", followed by the detail
// on a line of its own when it is not empty.
func MountStatus(mux *http.ServeMux, reg *prometheus.Registry, status func(*http.Request) (detail string, err error)) {
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		detail, err := "", error(nil)
		if status != nil {
			detail, err = status(r)
		}
		if detail != "" {
			detail += "\n"
		}
		if err != nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "not ready: "+err.Error()+"\n"+detail)
			return
		}
		_, _ = io.WriteString(w, "ready\n"+detail)
	})
}
