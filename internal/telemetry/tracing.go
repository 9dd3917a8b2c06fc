package telemetry

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// StartTracing sets up OpenTelemetry tracing for service when the standard
// environment asks for it: OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set (e.g. http://otel-collector:4318).
// Spans are batched and exported over OTLP/HTTP (protobuf); the exporter
// reads the other OTEL_EXPORTER_OTLP_* variables itself, the provider reads
// OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG, and OTEL_SERVICE_NAME
// and OTEL_RESOURCE_ATTRIBUTES override the resource.
//
// When neither endpoint variable is set it returns a nil provider and a
// no-op shutdown: nothing is started and services skip every tracing hook.
// shutdown flushes the spans still buffered (for at most 5 seconds); call
// it before exiting.
func StartTracing(ctx context.Context, service string, getenv func(string) string) (tp trace.TracerProvider, shutdown func(context.Context) error, err error) {
	noop := func(context.Context) error { return nil }
	url := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") // the full URL
	if base := getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); url == "" && base != "" {
		url = strings.TrimSuffix(base, "/") + "/v1/traces" // the OTLP/HTTP convention
	}
	if url == "" {
		return nil, noop, nil
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(url))
	if err != nil {
		return nil, noop, fmt.Errorf("otlp trace exporter: %w", err)
	}
	// Later detectors win: the environment overrides the service name.
	res, err := resource.New(ctx, resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", service)), resource.WithFromEnv())
	if err != nil {
		return nil, noop, fmt.Errorf("trace resource: %w", err)
	}
	sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return sdk, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second) // an unreachable collector must not hold up an exit
		defer cancel()
		return sdk.Shutdown(ctx)
	}, nil
}
