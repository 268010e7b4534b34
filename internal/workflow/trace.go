package workflow

// Traces of runs (internal/tracing, docs/OPERATIONS.md#traces). Everything
// here is called from a few marked lines of engine.go, step.go, approval.go
// and human.go. With traces off the tracer is the no-op one, no traceparent
// is stored and nothing is read for a span.
//
// The spans of a run:
//
//	workflow.start <workflow>          root of the run's trace, stored as workflow_runs.trace_parent
//	├─ process workflow_run            the first River job (its parent is the inserting span)
//	├─ workflow.execute <workflow>     one per execution: first job, each resume, retry, recovery;
//	│  │                               parent the stored traceparent, linked to its River job's span
//	│  ├─ step|effect|model|approval|sleep|event <name>
//	│  │  └─ chat <model>              a model call, with the gen_ai.* attributes
//	│  └─ SQL spans (otelpgx)
//	└─ approval <action kind>          from the request's opening to its decision: tier, rule,
//	                                   verdict, time to decision; linked to the deciding request

import (
	"context"
	"errors"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/tracing"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
)

// Span attribute keys of Countersign's own spans.
const (
	AttrRunID          = "countersign.run.id"
	AttrWorkflow       = "countersign.workflow"
	AttrVersion        = "countersign.workflow.version"
	AttrResumeSeq      = "countersign.run.resume_seq"
	AttrAttempt        = "countersign.run.attempt"
	AttrOutcome        = "countersign.execution.outcome"
	AttrStepName       = "countersign.step.name"
	AttrStepKind       = "countersign.step.kind"
	AttrStepSeq        = "countersign.step.seq"
	AttrStepAttempt    = "countersign.step.attempt"
	AttrRequestID      = "countersign.approval.request_id"
	AttrTier           = "countersign.approval.tier"
	AttrRule           = "countersign.approval.rule"
	AttrVerdict        = "countersign.approval.verdict"
	AttrStatus         = "countersign.approval.status"
	AttrTimeToDecision = "countersign.approval.time_to_decision_ms"
)

// Execution outcomes (AttrOutcome).
const (
	OutcomeSuspended = "suspended" // parked for a human, a timer or an event
	OutcomeDone      = "done"      // completed, failed for good, or handed on
	OutcomeRetry     = "retry"     // River tries the job again
)

// initTracing sets the engine's tracer; tp nil means traces are off. With
// traces on, model calls go through tracedModel.
func (e *Engine) initTracing(tp trace.TracerProvider) {
	e.tracer = tracing.Tracer(tp)
	e.tracing = tp != nil
	if e.tracing {
		e.model = tracedModel{Provider: e.model, tracer: e.tracer}
	}
}

// traceStart starts the span that roots a new run's trace and returns the
// traceparent to store with the run. A run outlives the request that starts
// it, so its trace is a new one, linked to the caller's span.
func (e *Engine) traceStart(ctx context.Context, p StartParams) (context.Context, trace.Span, string) {
	if !e.tracing {
		return ctx, noop.Span{}, ""
	}
	ctx, span := e.tracer.Start(ctx, "workflow.start "+p.Workflow, trace.WithNewRoot(),
		trace.WithLinks(trace.LinkFromContext(ctx)), trace.WithAttributes(attribute.String(AttrWorkflow, p.Workflow)))
	return ctx, span, tracing.Parent(ctx)
}

// traceStarted ends the start span.
func traceStarted(span trace.Span, run *store.Run, created bool, err error) {
	if run != nil {
		span.SetAttributes(attribute.String(AttrRunID, run.ID), attribute.Int(AttrVersion, run.Version),
			attribute.Bool("countersign.run.created", created))
	}
	endSpan(span, err)
}

// traceExecution starts the span of one execution of run: a child of the
// run's stored traceparent, so that every resume lands in the run's trace,
// linked to the River job's span that carries it. A run stored without one
// (started with traces off) gets its executions under the job's span.
func (e *Engine) traceExecution(ctx context.Context, run *store.Run, job Job) (context.Context, trace.Span) {
	if !e.tracing {
		return ctx, noop.Span{}
	}
	opts := []trace.SpanStartOption{trace.WithAttributes(
		attribute.String(AttrRunID, run.ID), attribute.String(AttrWorkflow, run.Workflow), attribute.Int(AttrVersion, run.Version),
		attribute.Int(AttrResumeSeq, job.Seq), attribute.Int(AttrAttempt, job.Attempt))}
	if run.TraceParent != "" {
		opts = append(opts, trace.WithLinks(trace.LinkFromContext(ctx)))
		ctx = tracing.ContextWith(ctx, run.TraceParent)
	}
	return e.tracer.Start(ctx, "workflow.execute "+run.Workflow, opts...)
}

// traceExecuted ends an execution's span; x is nil when the execution ended
// before it began.
func traceExecuted(span trace.Span, x *execution, err error) {
	outcome := OutcomeDone
	switch {
	case err != nil:
		outcome = OutcomeRetry
	case x != nil && x.suspended:
		outcome = OutcomeSuspended
	}
	span.SetAttributes(attribute.String(AttrOutcome, outcome))
	endSpan(span, err)
}

// traceStep starts a step's span, under the execution's. Replayed steps
// have none (they do no work), nor do replays and simulations (sandbox).
func (x *execution) traceStep(ctx context.Context, s *slot) (context.Context, trace.Span) {
	if !x.engine.tracing || x.sandbox != nil {
		return ctx, noop.Span{}
	}
	return x.engine.tracer.Start(ctx, string(s.kind)+" "+s.name, trace.WithAttributes(
		attribute.String(AttrStepName, s.name), attribute.String(AttrStepKind, string(s.kind)),
		attribute.Int(AttrStepSeq, s.seq), attribute.Int(AttrStepAttempt, s.attempts)))
}

// traceStepped ends a step's span: suspending for a human is not an error.
func traceStepped(span trace.Span, err error) {
	if errors.Is(err, ErrSuspended) {
		span.SetAttributes(attribute.Bool("countersign.step.suspended", true))
		err = nil
	}
	endSpan(span, err)
}

// traceProposed records the policy's answer on the approval step's span; an
// action the policy approves by itself is decided at once.
func traceProposed(ctx context.Context, pd policy.Decision) {
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(attribute.String(AttrTier, string(pd.Tier)), attribute.String(AttrRule, pd.Rule))
	if pd.Tier == vocab.TierAuto {
		span.SetAttributes(attribute.String(AttrVerdict, string(vocab.VerdictApprove)), attribute.Int64(AttrTimeToDecision, 0))
	}
}

// traceDecided records a decided request as a span of its run's trace, from
// the request's opening to its decision, linked to the span that decided it
// (the console's or the API's request, a deadline's job). verdict is "" when
// the request's status says it (a deadline's on_timeout). Reads the request
// and its run only with traces on.
func (e *Engine) traceDecided(ctx context.Context, requestID string, verdict vocab.Verdict) {
	if !e.tracing {
		return
	}
	ctx = context.WithoutCancel(ctx)
	req, err := store.RequestGet(ctx, e.pool, requestID)
	if err != nil || req.DecidedAt == nil {
		return
	}
	run, err := store.RunGet(ctx, e.pool, req.RunID)
	if err != nil {
		return
	}
	if verdict == "" {
		if req.DecidedBy == nil || !strings.HasPrefix(*req.DecidedBy, "policy:") {
			return // decided by someone before its deadline: traced then
		}
		switch req.Status {
		case vocab.RequestApproved:
			verdict = vocab.VerdictApprove
		case vocab.RequestRejected:
			verdict = vocab.VerdictReject
		default:
			return // escalated or cancelled: not a decision
		}
	}
	link := trace.LinkFromContext(ctx)
	_, span := e.tracer.Start(tracing.ContextWith(ctx, run.TraceParent), "approval "+req.ActionKind,
		trace.WithTimestamp(req.CreatedAt), trace.WithLinks(link), trace.WithAttributes(
			attribute.String(AttrRunID, run.ID), attribute.String(AttrWorkflow, run.Workflow),
			attribute.String(AttrRequestID, req.ID), attribute.String(AttrTier, string(req.Tier)),
			attribute.String(AttrRule, req.Rule), attribute.String(AttrVerdict, string(verdict)),
			attribute.String(AttrStatus, string(req.Status)),
			attribute.Int64(AttrTimeToDecision, req.DecidedAt.Sub(req.CreatedAt).Milliseconds())))
	span.End(trace.WithTimestamp(*req.DecidedAt))
}

// endSpan ends span, recording err as its error.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// GenAI semantic-convention attribute keys (model calls).
const (
	AttrGenAIOperation    = "gen_ai.operation.name"
	AttrGenAISystem       = "gen_ai.system"
	AttrGenAIProvider     = "gen_ai.provider.name" // the newer name of gen_ai.system
	AttrGenAIRequestModel = "gen_ai.request.model"
	AttrGenAIMaxTokens    = "gen_ai.request.max_tokens"
	AttrGenAIRespModel    = "gen_ai.response.model"
	AttrGenAIInputTokens  = "gen_ai.usage.input_tokens"
	AttrGenAIOutputTokens = "gen_ai.usage.output_tokens"
)

// tracedModel makes each model call a client span named and described as
// OpenTelemetry's GenAI semantic conventions say. Prompts and answers are
// not recorded.
type tracedModel struct {
	ai.Provider
	tracer trace.Tracer
}

// Complete implements ai.Provider.
func (m tracedModel) Complete(ctx context.Context, req ai.Request) (*ai.Response, error) {
	// Name() is "openai:<model>" or "offline".
	system, model, ok := strings.Cut(m.Name(), ":")
	if !ok {
		model = system
	}
	attrs := []attribute.KeyValue{attribute.String(AttrGenAIOperation, "chat"), attribute.String(AttrGenAISystem, system),
		attribute.String(AttrGenAIProvider, system), attribute.String(AttrGenAIRequestModel, model),
		attribute.String("countersign.model.task", req.Task)}
	if req.MaxTokens > 0 {
		attrs = append(attrs, attribute.Int(AttrGenAIMaxTokens, req.MaxTokens))
	}
	ctx, span := m.tracer.Start(ctx, "chat "+model, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	resp, err := m.Provider.Complete(ctx, req)
	if resp != nil {
		span.SetAttributes(attribute.String(AttrGenAIRespModel, resp.Model),
			attribute.Int(AttrGenAIInputTokens, resp.Usage.PromptTokens), attribute.Int(AttrGenAIOutputTokens, resp.Usage.CompletionTokens))
	}
	if err != nil {
		span.SetAttributes(attribute.String("error.type", errorType(err)))
	}
	endSpan(span, err)
	return resp, err
}

// errorType is the error.type of a failed model call.
func errorType(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, ai.ErrPermanent):
		return "permanent"
	case errors.Is(err, ai.ErrMalformed):
		return "malformed"
	}
	return "_OTHER"
}
