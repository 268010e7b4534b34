package tracing

import (
	"context"
	"encoding/json"
	"strconv"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// River is River middleware that traces jobs (riverqueue/rivercontrib's
// otelriver is not in the module proxy, so this is the part of it we need).
// On insert it writes the inserting span's traceparent into the job's
// metadata; working a job is a consumer span ("process <kind>") whose parent
// is that traceparent, so that a resume job's span sits under the request
// that decided, and under which the job's SQL and the engine's spans start.
type River struct {
	river.MiddlewareDefaults
	tracer trace.Tracer
}

// NewRiver returns the middleware for tp; install it on every River client
// of the process (inserting and working), only when traces are on.
func NewRiver(tp trace.TracerProvider) *River { return &River{tracer: Tracer(tp)} }

var (
	_ rivertype.JobInsertMiddleware = (*River)(nil)
	_ rivertype.WorkerMiddleware    = (*River)(nil)
)

// metadataKey is the job metadata field holding the inserting span's traceparent.
const metadataKey = "traceparent"

// InsertMany implements rivertype.JobInsertMiddleware.
func (m *River) InsertMany(ctx context.Context, many []*rivertype.JobInsertParams, doInner func(context.Context) ([]*rivertype.JobInsertResult, error)) ([]*rivertype.JobInsertResult, error) {
	if parent := Parent(ctx); parent != "" {
		for _, p := range many {
			p.Metadata = withMetadata(p.Metadata, parent)
		}
	}
	return doInner(ctx)
}

// withMetadata returns the metadata object with the traceparent added; the
// metadata as it is when it is not an object (River always writes one).
func withMetadata(raw []byte, traceparent string) []byte {
	md := map[string]json.RawMessage{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &md); err != nil || md == nil {
			return raw
		}
	}
	md[metadataKey], _ = json.Marshal(traceparent)
	out, err := json.Marshal(md)
	if err != nil {
		return raw
	}
	return out
}

// Work implements rivertype.WorkerMiddleware.
func (m *River) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	var md struct {
		TraceParent string `json:"traceparent"`
	}
	_ = json.Unmarshal(job.Metadata, &md)
	if md.TraceParent != "" {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": md.TraceParent})
	}
	ctx, span := m.tracer.Start(ctx, "process "+job.Kind, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
		attribute.String("messaging.system", "river"),
		attribute.String("messaging.operation.type", "process"),
		attribute.String("messaging.destination.name", job.Queue),
		attribute.String("messaging.message.id", strconv.FormatInt(job.ID, 10)),
		attribute.String("river.job.kind", job.Kind),
		attribute.Int("river.job.attempt", job.Attempt),
	))
	defer span.End()
	err := doInner(ctx)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}
