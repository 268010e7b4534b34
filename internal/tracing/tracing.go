// Package tracing sets up OpenTelemetry traces (docs/OPERATIONS.md#traces).
// They are off unless OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set: then spans go to that OTLP/HTTP
// endpoint, and the HTTP server (otelecho), SQL (otelpgx), River jobs (the
// middleware in river.go) and the engine (internal/workflow/trace.go) make
// them. Off, nothing is installed: no exporter, no middleware, no pgx tracer,
// and the engine's tracer is the no-op one.
//
// A run is one trace across its resumes: the traceparent of the span that
// starts it is stored with the run (workflow_runs.trace_parent) and every
// execution of the run is a child of it (Parent, ContextWith).
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ServiceName is the service.name of spans when OTEL_SERVICE_NAME (or
// OTEL_RESOURCE_ATTRIBUTES) names none.
const ServiceName = "countersign"

// ScopeName is the instrumentation scope of Countersign's own spans.
const ScopeName = "github.com/countersign/countersign"

// Enabled reports whether the environment asks for traces: an OTLP endpoint
// is set, and neither OTEL_SDK_DISABLED=true nor OTEL_TRACES_EXPORTER=none
// turns them off.
func Enabled(getenv func(string) string) bool {
	return endpoint(getenv) != "" && !strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") &&
		!strings.EqualFold(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")), "none")
}

// endpoint is the URL spans are sent to: the traces endpoint as it is, or
// the general endpoint with the signal's path, as the specification says.
func endpoint(getenv func(string) string) string {
	if u := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")); u != "" {
		return u
	}
	if u := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT")); u != "" {
		return strings.TrimSuffix(u, "/") + "/v1/traces"
	}
	return ""
}

// global is the provider Setup installed, nil while traces are off.
var global atomic.Pointer[sdktrace.TracerProvider]

// Global returns the provider Setup installed, or nil when traces are off:
// callers install their instrumentation only when it is not nil.
func Global() trace.TracerProvider {
	if tp := global.Load(); tp != nil {
		return tp
	}
	return nil
}

// Setup starts exporting spans when the environment asks for them (Enabled)
// and installs the provider as OpenTelemetry's global one, with the W3C
// trace-context and baggage propagators. It returns the function that
// flushes the spans still buffered and stops the exporter, to call before
// the process exits; when traces are off it does nothing and the returned
// function does nothing either. The other standard variables (service name
// and resource attributes, headers, timeout, compression, sampler, batch
// sizes) are read by the SDK as it documents.
func Setup(ctx context.Context, getenv func(string) string) (shutdown func(context.Context) error, err error) {
	nothing := func(context.Context) error { return nil }
	if !Enabled(getenv) {
		return nothing, nil
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			continue
		}
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nothing, fmt.Errorf("%s: %q is not an http(s) URL", name, v)
		}
	}
	ep := endpoint(getenv)
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(ep))
	if err != nil {
		return nothing, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res, err := resource.New(ctx, resource.WithAttributes(attribute.String("service.name", ServiceName)),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nothing, fmt.Errorf("trace resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	if !global.CompareAndSwap(nil, tp) {
		_ = tp.Shutdown(ctx)
		return nothing, errors.New("tracing is already set up in this process")
	}
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(Propagator)
	return func(ctx context.Context) error {
		global.CompareAndSwap(tp, nil)
		return tp.Shutdown(ctx)
	}, nil
}

// Propagator carries trace context in W3C traceparent/tracestate headers
// (HTTP requests, River job metadata) and baggage.
var Propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// Parent returns the W3C traceparent of the span in ctx, or "" when ctx
// holds no valid span (traces off).
func Parent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	return carrier["traceparent"]
}

// ContextWith returns ctx carrying traceparent as its remote parent span;
// ctx as it is when traceparent is empty or malformed.
func ContextWith(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}

// Tracer returns Countersign's tracer of tp, or the no-op tracer when tp is nil.
func Tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		return noopTracer
	}
	return tp.Tracer(ScopeName)
}
