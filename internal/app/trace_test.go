package app_test

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/internal/tracing"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// registerTraced adds a workflow that calls the model, waits for a human,
// then applies: one execution up to the gate, another after the decision.
func registerTraced(r *workflow.Registry, m *ai.Offline) {
	m.Handle("traced.draft", func(json.RawMessage) (any, error) { return map[string]string{"reply": "refund it"}, nil })
	workflow.Register(r, "traced", func(ctx context.Context, _ struct{}) (string, error) {
		draft, err := workflow.Generate[map[string]string](ctx, "draft", ai.Request{Task: "traced.draft", Input: json.RawMessage(`{"ticket":1}`), MaxTokens: 300})
		if err != nil {
			return "", err
		}
		if _, err := workflow.RequestApproval(ctx, workflow.Action{Kind: "refund", Summary: "Refund ticket 1", Params: map[string]any{"reply": draft["reply"]}}); err != nil {
			return "", err
		}
		if err := workflow.Sleep(ctx, "settle", 0); err != nil { // already due: passes at once
			return "", err
		}
		return workflow.Step(ctx, "apply", func(context.Context) (string, error) { return "applied", nil })
	})
}

// TestTraceOfARunAcrossItsResume runs a workflow that suspends at a gate and
// resumes after a decision, with an in-memory exporter, and checks the span
// tree: one trace for the run, rooted at its start span (whose traceparent
// the run stores), both executions in it, steps under them, the model call
// with its gen_ai attributes, and the approval with tier, rule, verdict and
// time to decision.
func TestTraceOfARunAcrossItsResume(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	b := testapp.Start(t, testapp.Options{TracerProvider: tp, Register: registerTraced})
	test := tp.Tracer("test")

	// The caller's span: a request that starts the run.
	callerCtx, caller := test.Start(context.Background(), "caller")
	run, created, err := b.Engine.Start(callerCtx, workflow.StartParams{Workflow: "traced", BusinessKey: "t1", StartedBy: "agent"})
	require.NoError(t, err)
	require.True(t, created)
	caller.End()
	b.WaitRun(t, run.ID, vocab.RunWaitingHuman)
	req := b.PendingRequest(t, run.ID)

	// The decider's span: the console request that approves.
	deciderCtx, decider := test.Start(context.Background(), "decider")
	_, err = b.Engine.Decide(deciderCtx, workflow.DecideParams{RequestID: req.ID, Actor: workflow.Actor{Name: "boss@example.com", Roles: []vocab.Role{vocab.RoleAdmin}},
		Verdict: vocab.VerdictApprove, PayloadHash: req.PayloadHash})
	require.NoError(t, err)
	decider.End()
	b.WaitRun(t, run.ID, vocab.RunCompleted)

	// Spans are exported as they end; the last execution's ends just after
	// the run's commit, the River job's after that.
	var spans tracetest.SpanStubs
	named := func(name string) []tracetest.SpanStub {
		var out []tracetest.SpanStub
		for _, s := range spans {
			if s.Name == name {
				out = append(out, s)
			}
		}
		return out
	}
	require.Eventually(t, func() bool {
		spans = exp.GetSpans()
		return len(named("workflow.execute traced")) == 2 && len(named("process workflow_run")) == 2
	}, 30*time.Second, 20*time.Millisecond, "two executions and their jobs")

	one := func(name string) tracetest.SpanStub {
		t.Helper()
		got := named(name)
		require.Len(t, got, 1, "spans named %q", name)
		return got[0]
	}
	start := one("workflow.start traced")
	runTrace := start.SpanContext.TraceID()
	require.False(t, start.Parent.IsValid(), "the run's trace is its own")
	require.NotEqual(t, caller.SpanContext().TraceID(), runTrace)
	require.Len(t, start.Links, 1)
	require.Equal(t, caller.SpanContext().SpanID(), start.Links[0].SpanContext.SpanID(), "linked to the caller")
	requireAttr(t, start.Attributes, workflow.AttrRunID, run.ID)

	stored, err := store.RunGet(context.Background(), b.Pool, run.ID)
	require.NoError(t, err)
	require.Equal(t, "00-"+runTrace.String()+"-"+start.SpanContext.SpanID().String()+"-01", stored.TraceParent, "the run stores its start span")

	// Both executions are children of the start span, each linked to the
	// River job that carried it.
	jobs := named("process workflow_run")
	var outcomes []string
	for _, x := range named("workflow.execute traced") {
		require.Equal(t, runTrace, x.SpanContext.TraceID(), "every execution is in the run's trace")
		require.Equal(t, start.SpanContext.SpanID(), x.Parent.SpanID())
		require.Len(t, x.Links, 1)
		require.True(t, slices.ContainsFunc(jobs, func(j tracetest.SpanStub) bool { return j.SpanContext.SpanID() == x.Links[0].SpanContext.SpanID() }),
			"linked to its job's span")
		outcomes = append(outcomes, attr(x.Attributes, workflow.AttrOutcome).AsString())
	}
	require.ElementsMatch(t, []string{workflow.OutcomeSuspended, workflow.OutcomeDone}, outcomes)

	// The first job was inserted under the start span, the resume job under
	// the decider's span.
	var jobParents []trace.SpanID
	for _, j := range jobs {
		jobParents = append(jobParents, j.Parent.SpanID())
		requireAttr(t, j.Attributes, "messaging.system", "river")
	}
	require.ElementsMatch(t, []trace.SpanID{start.SpanContext.SpanID(), decider.SpanContext().SpanID()}, jobParents)

	// Steps, under their execution; the replayed ones have no span.
	execOf := func(s tracetest.SpanStub) string {
		for _, x := range named("workflow.execute traced") {
			if x.SpanContext.SpanID() == s.Parent.SpanID() {
				return attr(x.Attributes, workflow.AttrOutcome).AsString()
			}
		}
		return ""
	}
	draft, gate, settle, apply := one("model draft"), one("approval request_approval"), one("sleep settle"), one("step apply")
	require.Equal(t, workflow.OutcomeSuspended, execOf(draft))
	require.Equal(t, workflow.OutcomeSuspended, execOf(gate))
	require.Equal(t, workflow.OutcomeDone, execOf(settle))
	require.Equal(t, workflow.OutcomeDone, execOf(apply))
	requireAttr(t, settle.Attributes, workflow.AttrStepKind, string(vocab.StepKindSleep))
	requireAttr(t, apply.Attributes, workflow.AttrStepSeq, int64(3))
	requireAttr(t, draft.Attributes, workflow.AttrStepKind, string(vocab.StepKindModel))
	requireAttr(t, gate.Attributes, workflow.AttrTier, string(req.Tier))
	requireAttr(t, gate.Attributes, "countersign.step.suspended", true)

	// The model call: a client span under its step, with gen_ai attributes.
	chat := one("chat offline")
	require.Equal(t, draft.SpanContext.SpanID(), chat.Parent.SpanID())
	require.Equal(t, trace.SpanKindClient, chat.SpanKind)
	requireAttr(t, chat.Attributes, "gen_ai.system", "offline")
	requireAttr(t, chat.Attributes, "gen_ai.request.model", "offline")
	requireAttr(t, chat.Attributes, "gen_ai.operation.name", "chat")
	requireAttr(t, chat.Attributes, "gen_ai.request.max_tokens", int64(300))
	require.Positive(t, attr(chat.Attributes, "gen_ai.usage.input_tokens").AsInt64())
	require.Positive(t, attr(chat.Attributes, "gen_ai.usage.output_tokens").AsInt64())
	steps, err := store.StepList(context.Background(), b.Pool, run.ID)
	require.NoError(t, err)
	require.Equal(t, int64(steps[0].Tokens), attr(chat.Attributes, "gen_ai.usage.input_tokens").AsInt64()+attr(chat.Attributes, "gen_ai.usage.output_tokens").AsInt64(),
		"the tokens the step recorded")

	// The approval: in the run's trace, from the request's opening to its decision.
	decided, err := store.RequestGet(context.Background(), b.Pool, req.ID)
	require.NoError(t, err)
	approval := one("approval refund")
	require.Equal(t, runTrace, approval.SpanContext.TraceID())
	require.Equal(t, start.SpanContext.SpanID(), approval.Parent.SpanID())
	require.Len(t, approval.Links, 1)
	require.Equal(t, decider.SpanContext().SpanID(), approval.Links[0].SpanContext.SpanID(), "linked to the decision's request")
	requireAttr(t, approval.Attributes, workflow.AttrTier, string(req.Tier))
	requireAttr(t, approval.Attributes, workflow.AttrRule, req.Rule)
	requireAttr(t, approval.Attributes, workflow.AttrVerdict, string(vocab.VerdictApprove))
	requireAttr(t, approval.Attributes, workflow.AttrRequestID, req.ID)
	require.True(t, approval.StartTime.Equal(decided.CreatedAt))
	require.True(t, approval.EndTime.Equal(*decided.DecidedAt))
	requireAttr(t, approval.Attributes, workflow.AttrTimeToDecision, decided.DecidedAt.Sub(decided.CreatedAt).Milliseconds())
}

// TestTracesOffByDefault: without a provider and without the environment's
// endpoint nothing is traced and no traceparent is stored.
func TestTracesOffByDefault(t *testing.T) {
	t.Parallel()
	require.Nil(t, tracing.Global())
	b := testapp.Start(t, testapp.Options{Register: registerTraced})
	run, _, err := b.Engine.Start(context.Background(), workflow.StartParams{Workflow: "traced", BusinessKey: "off", StartedBy: "agent"})
	require.NoError(t, err)
	b.WaitRun(t, run.ID, vocab.RunWaitingHuman)
	got, err := store.RunGet(context.Background(), b.Pool, run.ID)
	require.NoError(t, err)
	require.Empty(t, got.TraceParent)
	var metadata string
	require.NoError(t, b.Pool.QueryRow(context.Background(), `SELECT metadata::text FROM river_job WHERE args->>'run_id' = $1`, run.ID).Scan(&metadata))
	require.NotContains(t, metadata, "traceparent")
}

// TestTracesReachAnOTLPReceiver configures tracing as an operator would,
// with OTEL_EXPORTER_OTLP_ENDPOINT pointing at a local OTLP/HTTP receiver,
// and checks that the real exporter delivers the spans of HTTP requests,
// SQL statements, River jobs and runs. It sets the process's environment,
// so it does not run in parallel.
func TestTracesReachAnOTLPReceiver(t *testing.T) {
	var mu sync.Mutex
	var got []*tracepb.ResourceSpans
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "not an OTLP/HTTP trace export", http.StatusBadRequest)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, req.ResourceSpans...)
		mu.Unlock()
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(receiver.Close)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.URL)
	t.Setenv("OTEL_SERVICE_NAME", "countersign-test")
	// Nothing is sent before the flush at shutdown (an hour's batching delay).
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "3600000")

	ctx := context.Background()
	shutdown, err := tracing.Setup(ctx, os.Getenv)
	require.NoError(t, err)
	t.Cleanup(func() { _ = shutdown(ctx) })
	require.NotNil(t, tracing.Global())

	// The process as serve builds it: a traced pool, then the app.
	url := testdb.New(t)
	pool, err := app.NewPool(ctx, config.Config{DatabaseURL: url, Workers: 2})
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	b := testapp.StartOn(t, pool, url, testapp.Options{Web: true, Register: func(r *workflow.Registry, _ *ai.Offline) {
		workflow.Register(r, "otlp", func(ctx context.Context, _ struct{}) (int, error) {
			return workflow.Step(ctx, "count", func(context.Context) (int, error) { return 1, nil })
		})
	}})

	// An HTTP request continuing a caller's trace.
	const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	hreq, err := http.NewRequest(http.MethodGet, b.Addr+"/healthz", nil)
	require.NoError(t, err)
	hreq.Header.Set("traceparent", "00-"+callerTrace+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(hreq)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	run, _, err := b.Engine.Start(ctx, workflow.StartParams{Workflow: "otlp", BusinessKey: "o1", StartedBy: "agent"})
	require.NoError(t, err)
	b.WaitRun(t, run.ID, vocab.RunCompleted)

	// The run's last spans (its execution's, its job's) end just after its
	// commit; then the process stops, flushing what is buffered.
	time.Sleep(2 * time.Second)
	mu.Lock()
	require.Empty(t, got, "OTEL_BSP_SCHEDULE_DELAY holds the spans until the flush")
	mu.Unlock()
	require.NoError(t, shutdown(ctx))
	require.Nil(t, tracing.Global(), "shut down")

	type seen struct{ trace, service string }
	spans := map[string][]seen{}
	func() {
		mu.Lock()
		defer mu.Unlock()
		for _, rs := range got {
			service := ""
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.Key == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					spans[s.Name] = append(spans[s.Name], seen{trace: trace.TraceID(s.TraceId).String(), service: service})
				}
			}
		}
	}()
	require.Len(t, spans["step count"], 1, "the run's spans arrived: %v", slices.Collect(maps.Keys(spans)))
	require.Len(t, spans["process workflow_run"], 1)

	require.Equal(t, "countersign-test", spans["step count"][0].service, "OTEL_SERVICE_NAME names the service")
	runTrace := spans["workflow.start otlp"][0].trace
	require.Equal(t, runTrace, spans["workflow.execute otlp"][0].trace)
	require.Equal(t, runTrace, spans["step count"][0].trace)
	require.NotEmpty(t, spans["RunClaimHistory"], "SQL statements are spans, named for their query")
	// The first job was inserted under the run's start span, so its claim is in the run's trace.
	require.True(t, slices.ContainsFunc(spans["RunClaimHistory"], func(s seen) bool { return s.trace == runTrace }), "the run's claim is in its trace")
	var httpTraces []string
	for name, ss := range spans {
		if strings.HasSuffix(name, "/healthz") {
			for _, s := range ss {
				httpTraces = append(httpTraces, s.trace)
			}
		}
	}
	require.Contains(t, httpTraces, callerTrace, "the HTTP server span continues the caller's traceparent")
}

func attr(attrs []attribute.KeyValue, key string) attribute.Value {
	for _, kv := range attrs {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

func requireAttr(t *testing.T, attrs []attribute.KeyValue, key string, want any) {
	t.Helper()
	v := attr(attrs, key)
	require.NotEqual(t, attribute.EMPTY, v.Type(), "attribute %s missing", key)
	require.Equal(t, want, v.AsInterface(), "attribute %s", key)
}

const tracePolicy = `version: 1
rules:
  - name: tags
    when: action.kind == "tag"
    tier: batched
    batch: {group_by: [action.kind], max_size: 1, max_wait: 1h}
  - name: refunds
    when: action.kind == "refund"
    tier: explicit
    deadline: 30m
    on_timeout: reject
`

type traceClock struct{ offset atomic.Int64 }

func (c *traceClock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// TestApprovalSpansOfEveryDecision: a rejection that ends the run, a
// deadline's on_timeout and a batch decision each add one approval span to
// the run's trace, with their verdicts; a deadline that finds the request
// already decided adds none.
func TestApprovalSpansOfEveryDecision(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	clock := &traceClock{}
	b := testapp.Start(t, testapp.Options{TracerProvider: tp, Now: clock.Now, Register: func(r *workflow.Registry, _ *ai.Offline) {
		workflow.Register(r, "gate", func(ctx context.Context, in struct{ Kind string }) (string, error) {
			d, err := workflow.RequestApproval(ctx, workflow.Action{Kind: in.Kind, Summary: "Do " + in.Kind})
			return string(d.Verdict), err
		})
	}})
	ctx := context.Background()
	_, err := policystore.Apply(ctx, b.Pool, []byte(tracePolicy), "setup")
	require.NoError(t, err)
	b.App.Policies.Invalidate()
	boss := workflow.Actor{Name: "boss@example.com", Roles: []vocab.Role{vocab.RoleAdmin}}
	gate := func(key, kind string) (*store.Run, *store.Request) {
		run, _, err := b.Engine.Start(ctx, workflow.StartParams{Workflow: "gate", BusinessKey: key, StartedBy: "agent",
			Input: json.RawMessage(`{"Kind":"` + kind + `"}`)})
		require.NoError(t, err)
		b.WaitRun(t, run.ID, vocab.RunWaitingHuman)
		got, err := store.RunGet(ctx, b.Pool, run.ID)
		require.NoError(t, err)
		return got, b.PendingRequest(t, run.ID)
	}
	approvalSpans := func(reqID string) []tracetest.SpanStub {
		var out []tracetest.SpanStub
		for _, s := range exp.GetSpans() {
			if strings.HasPrefix(s.Name, "approval ") && attr(s.Attributes, workflow.AttrRequestID).AsString() == reqID {
				out = append(out, s)
			}
		}
		return out
	}
	check := func(t *testing.T, run *store.Run, req *store.Request, rule string, verdict vocab.Verdict) {
		t.Helper()
		spans := approvalSpans(req.ID)
		require.Len(t, spans, 1)
		s := spans[0]
		require.Equal(t, run.TraceParent, "00-"+s.SpanContext.TraceID().String()+"-"+s.Parent.SpanID().String()+"-01", "a child of the run's start span")
		requireAttr(t, s.Attributes, workflow.AttrRule, rule)
		requireAttr(t, s.Attributes, workflow.AttrTier, string(req.Tier))
		requireAttr(t, s.Attributes, workflow.AttrVerdict, string(verdict))
	}

	t.Run("RejectionEndingTheRun", func(t *testing.T) {
		run, req := gate("reject", "refund")
		_, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: boss, Verdict: vocab.VerdictReject, Reason: "no", PayloadHash: req.PayloadHash})
		require.NoError(t, err)
		b.WaitRun(t, run.ID, vocab.RunRejected)
		check(t, run, req, "refunds", vocab.VerdictReject)

		// Its deadline comes later and finds it decided: no second span.
		clock.offset.Add(int64(31 * time.Minute))
		t.Cleanup(func() { clock.offset.Add(-int64(31 * time.Minute)) })
		_, err = b.Engine.Expire(ctx, req.ID)
		require.NoError(t, err)
		require.Len(t, approvalSpans(req.ID), 1)
	})

	t.Run("Deadline", func(t *testing.T) {
		run, req := gate("deadline", "refund")
		clock.offset.Add(int64(31 * time.Minute))
		t.Cleanup(func() { clock.offset.Add(-int64(31 * time.Minute)) })
		_, err := b.Engine.Expire(ctx, req.ID)
		require.NoError(t, err)
		b.WaitRun(t, run.ID, vocab.RunRejected)
		check(t, run, req, "refunds", vocab.VerdictReject)
	})

	t.Run("Batch", func(t *testing.T) {
		run, req := gate("batch", "tag")
		require.NotNil(t, req.BatchID)
		res, err := b.Engine.DecideBatch(ctx, workflow.BatchDecideParams{BatchID: *req.BatchID, Actor: boss, Action: workflow.ApproveSelected,
			Items: []workflow.ItemRef{{ID: req.ID, PayloadHash: req.PayloadHash}}, Selected: []string{req.ID}})
		require.NoError(t, err)
		require.Equal(t, 1, res.Approved, "%+v", res)
		b.WaitRun(t, run.ID, vocab.RunCompleted)
		check(t, run, req, "tags", vocab.VerdictApprove)
	})
}
