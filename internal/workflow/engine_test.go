package workflow_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

type counterIn struct {
	FailTimes int `json:"fail_times"`
}

type counterOut struct {
	A, B, C int
}

func start(t *testing.T, b *testapp.Bundle, wf, key string, input any) *store.Run {
	t.Helper()
	raw, err := json.Marshal(input)
	require.NoError(t, err)
	run, created, err := b.Engine.Start(context.Background(), workflow.StartParams{
		Workflow: wf, BusinessKey: key, Input: raw, StartedBy: "tester@example.com"})
	require.NoError(t, err)
	require.True(t, created)
	return run
}

func reviewer(name string) workflow.Actor {
	return workflow.Actor{Name: name, Roles: []vocab.Role{"reviewer"}}
}

func TestReplay(t *testing.T) {
	t.Parallel()
	var calls [3]atomic.Int32
	var third atomic.Int32
	b := testapp.Start(t, testapp.Options{Register: func(r *workflow.Registry, _ *ai.Offline) {
		workflow.Register(r, "counter", func(ctx context.Context, in counterIn) (counterOut, error) {
			a, err := workflow.Step(ctx, "one", func(context.Context) (int, error) { return int(calls[0].Add(1)), nil })
			if err != nil {
				return counterOut{}, err
			}
			bb, err := workflow.Step(ctx, "two", func(context.Context) (int, error) { return int(calls[1].Add(1)) * 10, nil })
			if err != nil {
				return counterOut{}, err
			}
			c, err := workflow.Step(ctx, "three", func(context.Context) (int, error) {
				if int(third.Add(1)) <= in.FailTimes {
					return 0, errors.New("flaky downstream")
				}
				return int(calls[2].Add(1)) * 100, nil
			})
			return counterOut{a, bb, c}, err
		})
	}})

	t.Run("RetryThenSuccessReplaysRecordedSteps", func(t *testing.T) {
		run := start(t, b, "counter", "k1", counterIn{FailTimes: 1})
		done := b.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunFailed)
		require.Equal(t, vocab.RunCompleted, done.Status, "error: %v", done.ErrorMessage)
		require.Equal(t, 2, done.Attempt, "one failed attempt, then success")
		var out counterOut
		require.NoError(t, json.Unmarshal(done.Output, &out))
		require.Equal(t, counterOut{1, 10, 100}, out)
		require.EqualValues(t, 1, calls[0].Load(), "step one ran once across two attempts")
		require.EqualValues(t, 1, calls[1].Load(), "step two ran once across two attempts")
		require.EqualValues(t, 2, third.Load(), "step three was tried twice")

		steps, err := store.StepList(context.Background(), b.Pool, run.ID)
		require.NoError(t, err)
		require.Len(t, steps, 3)
		require.Equal(t, 2, steps[2].Attempts)
		require.Equal(t, vocab.StepCompleted, steps[2].Status)
	})
}

func TestFailures(t *testing.T) {
	t.Parallel()
	var permanentCalls atomic.Int32
	b := testapp.Start(t, testapp.Options{Register: func(r *workflow.Registry, m *ai.Offline) {
		workflow.Register(r, "permanent", func(ctx context.Context, _ struct{}) (int, error) {
			return workflow.Step(ctx, "charge", func(context.Context) (int, error) {
				permanentCalls.Add(1)
				return 0, workflow.Permanent(errors.New("card declined"))
			})
		})
		workflow.Register(r, "loop", func(ctx context.Context, _ struct{}) (int, error) {
			for i := 0; ; i++ {
				if _, err := workflow.Step(ctx, "poll", func(context.Context) (int, error) { return i, nil }); err != nil {
					return 0, err
				}
			}
		}, workflow.Options{MaxSteps: 5})
		m.Handle("chatty", func(json.RawMessage) (any, error) {
			return map[string]string{"text": string(make([]byte, 4000))}, nil
		})
		workflow.Register(r, "chatty", func(ctx context.Context, _ struct{}) (int, error) {
			for {
				if _, err := workflow.Generate[map[string]string](ctx, "ask", ai.Request{Task: "chatty"}); err != nil {
					return 0, err
				}
			}
		}, workflow.Options{MaxTokens: 2500, MaxModelCalls: 100})
		workflow.Register(r, "calls", func(ctx context.Context, _ struct{}) (int, error) {
			for {
				if _, err := workflow.Generate[map[string]string](ctx, "ask", ai.Request{Task: "summarize", Input: json.RawMessage(`{}`)}); err != nil {
					return 0, err
				}
			}
		}, workflow.Options{MaxModelCalls: 3})
	}})

	t.Run("PermanentErrorFailsAtOnce", func(t *testing.T) {
		run := b.WaitRun(t, start(t, b, "permanent", "p", struct{}{}).ID, vocab.RunFailed)
		require.Equal(t, "permanent_error", *run.ErrorCode)
		require.Contains(t, *run.ErrorMessage, "card declined")
		require.Equal(t, 1, run.Attempt)
		require.EqualValues(t, 1, permanentCalls.Load())
	})
	t.Run("StepBudget", func(t *testing.T) {
		run := b.WaitRun(t, start(t, b, "loop", "l", struct{}{}).ID, vocab.RunFailed)
		require.Equal(t, "budget_exceeded", *run.ErrorCode)
		require.Contains(t, *run.ErrorMessage, "limit of 5 steps")
		require.Equal(t, 5, run.StepsUsed)
	})
	t.Run("TokenBudget", func(t *testing.T) {
		run := b.WaitRun(t, start(t, b, "chatty", "c", struct{}{}).ID, vocab.RunFailed)
		require.Equal(t, "budget_exceeded", *run.ErrorCode)
		require.Greater(t, run.TokensUsed, 2500, "the tokens of the call that crossed the limit are counted")
		require.Equal(t, 1, run.Attempt)
	})
	t.Run("ModelCallBudget", func(t *testing.T) {
		run := b.WaitRun(t, start(t, b, "calls", "m", struct{}{}).ID, vocab.RunFailed)
		require.Equal(t, "budget_exceeded", *run.ErrorCode)
		require.Equal(t, 3, run.ModelCalls)
	})
}

// gated is a workflow with a model call, a human gate and an effect.
func gated(r *workflow.Registry, m *ai.Offline, effects *atomic.Int32, beforeGate *atomic.Bool) {
	m.Handle("propose", func(in json.RawMessage) (any, error) {
		var v struct{ Feedback string }
		_ = json.Unmarshal(in, &v)
		return map[string]any{"amount": 100 - len(v.Feedback)}, nil
	})
	workflow.Register(r, "gated", func(ctx context.Context, in struct{ Customer string }) (map[string]any, error) {
		if beforeGate != nil && beforeGate.Load() {
			if _, err := workflow.Step(ctx, "new_step", func(context.Context) (int, error) { return 1, nil }); err != nil {
				return nil, err
			}
		}
		feedback := ""
		for {
			input, _ := json.Marshal(map[string]string{"feedback": feedback})
			p, err := workflow.Generate[struct{ Amount float64 }](ctx, "propose", ai.Request{Task: "propose", Input: input})
			if err != nil {
				return nil, err
			}
			d, err := workflow.RequestApproval(ctx, workflow.Action{Kind: "payment.refund", Summary: "Refund " + in.Customer,
				Params: map[string]any{"amount": p.Amount, "customer": in.Customer}})
			if err != nil {
				return nil, err
			}
			if d.ChangesRequested() {
				feedback = d.Reason
				continue
			}
			return workflow.Effect(ctx, "apply", func(ctx context.Context, ec workflow.EffectContext) (map[string]any, error) {
				effects.Add(1)
				_, err := store.OutboxInsert(ctx, ec.Tx, ec.Key, workflow.RunID(ctx), "refund", d.Params)
				return d.Params, err
			})
		}
	})
}

func TestHumanGate(t *testing.T) {
	t.Parallel()
	var effects atomic.Int32
	var changed atomic.Bool
	b := testapp.Start(t, testapp.Options{Register: func(r *workflow.Registry, m *ai.Offline) {
		gated(r, m, &effects, &changed)
	}})
	ctx := context.Background()

	t.Run("WaitingRunHoldsNoJobAndResumesOnApproval", func(t *testing.T) {
		run := b.WaitRun(t, start(t, b, "gated", "approve", map[string]string{"Customer": "ada"}).ID, vocab.RunWaitingHuman)
		require.Equal(t, 0, b.LiveJobs(t, run.ID), "a waiting run holds no River job")
		req := b.PendingRequest(t, run.ID)
		require.Equal(t, vocab.TierExplicit, req.Tier)
		require.Equal(t, "default-explicit", req.Rule)

		res, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: reviewer("rev@example.com"),
			Verdict: vocab.VerdictApprove, PayloadHash: req.PayloadHash})
		require.NoError(t, err)
		require.NotNil(t, res.Decision)
		done := b.WaitRun(t, run.ID, vocab.RunCompleted)
		require.JSONEq(t, `{"amount":100,"customer":"ada"}`, string(done.Output))
		require.Equal(t, 1, done.ModelCalls, "the replay after the decision did not call the model again")
	})

	t.Run("Reject", func(t *testing.T) {
		run := b.WaitRun(t, start(t, b, "gated", "reject", map[string]string{"Customer": "bob"}).ID, vocab.RunWaitingHuman)
		req := b.PendingRequest(t, run.ID)
		_, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: reviewer("rev@example.com"),
			Verdict: vocab.VerdictReject, PayloadHash: req.PayloadHash})
		require.ErrorIs(t, err, workflow.ErrInvalidInput, "a rejection needs a reason")
		_, err = b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: reviewer("rev@example.com"),
			Verdict: vocab.VerdictReject, Reason: "not eligible", PayloadHash: req.PayloadHash})
		require.NoError(t, err)
		done := b.WaitRun(t, run.ID, vocab.RunRejected)
		require.NotNil(t, done.FinishedAt)
		require.Equal(t, 0, b.LiveJobs(t, run.ID))
	})

	t.Run("RequestChangesProposesAgain", func(t *testing.T) {
		run := b.WaitRun(t, start(t, b, "gated", "changes", map[string]string{"Customer": "cy"}).ID, vocab.RunWaitingHuman)
		first := b.PendingRequest(t, run.ID)
		_, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: first.ID, Actor: reviewer("rev@example.com"),
			Verdict: vocab.VerdictRequestChanges, Reason: "lower it", PayloadHash: first.PayloadHash})
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			reqs, err := store.RequestListByRun(ctx, b.Pool, run.ID)
			return err == nil && len(reqs) == 2 && reqs[1].Status == vocab.RequestPending
		}, 10e9, 10e6)
		second := b.PendingRequest(t, run.ID)
		require.NotEqual(t, first.PayloadHash, second.PayloadHash)
		var action workflow.Action
		require.NoError(t, json.Unmarshal(second.Action, &action))
		require.EqualValues(t, 92, action.Params["amount"], "the feedback reached the model")

		_, err = b.Engine.Decide(ctx, workflow.DecideParams{RequestID: second.ID, Actor: reviewer("rev@example.com"),
			Verdict: vocab.VerdictEdit, EditedParams: map[string]any{"amount": 80.0, "customer": "cy"}, PayloadHash: second.PayloadHash})
		require.NoError(t, err)
		done := b.WaitRun(t, run.ID, vocab.RunCompleted)
		require.JSONEq(t, `{"amount":80,"customer":"cy"}`, string(done.Output), "the edited parameters were applied")
		d, err := store.DecisionGetByRequest(ctx, b.Pool, second.ID)
		require.NoError(t, err)
		require.JSONEq(t, `[{"field":"amount","from":92,"to":80}]`, string(d.Diff))
	})

	t.Run("NonDeterminismIsDetected", func(t *testing.T) {
		run := b.WaitRun(t, start(t, b, "gated", "nondet", map[string]string{"Customer": "dee"}).ID, vocab.RunWaitingHuman)
		req := b.PendingRequest(t, run.ID)
		changed.Store(true) // a deploy changed the code while the run waited
		defer changed.Store(false)
		_, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: reviewer("rev@example.com"),
			Verdict: vocab.VerdictApprove, PayloadHash: req.PayloadHash})
		require.NoError(t, err)
		done := b.WaitRun(t, run.ID, vocab.RunFailed)
		require.Equal(t, "non_deterministic", *done.ErrorCode)
		require.Contains(t, *done.ErrorMessage, `step 1 is model "propose" in the run's history, but the code now reaches step "new_step"`)
	})

	t.Run("DecisionRules", func(t *testing.T) {
		run := b.WaitRun(t, start(t, b, "gated", "rules", map[string]string{"Customer": "eve"}).ID, vocab.RunWaitingHuman)
		req := b.PendingRequest(t, run.ID)
		decide := func(actor workflow.Actor, verdict vocab.Verdict, hash string, edited map[string]any) error {
			_, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: actor, Verdict: verdict,
				PayloadHash: hash, EditedParams: edited, Reason: "r"})
			return err
		}
		require.ErrorIs(t, decide(reviewer("x"), vocab.VerdictApprove, "stale", nil), workflow.ErrPayloadChanged)
		require.ErrorIs(t, decide(workflow.Actor{Name: "v", Roles: []vocab.Role{"viewer"}}, vocab.VerdictApprove, req.PayloadHash, nil), workflow.ErrForbidden)
		require.ErrorIs(t, decide(reviewer("tester@example.com"), vocab.VerdictApprove, req.PayloadHash, nil), workflow.ErrForbidden,
			"the user who started the run cannot approve it")
		require.ErrorIs(t, decide(reviewer("x"), vocab.VerdictEdit, req.PayloadHash, map[string]any{"amount": "lots", "customer": "eve"}), workflow.ErrInvalidInput)
		require.ErrorIs(t, decide(reviewer("x"), vocab.VerdictEdit, req.PayloadHash, map[string]any{"amount": 1.0, "customer": "eve", "extra": 1.0}), workflow.ErrInvalidInput)
		require.ErrorIs(t, decide(reviewer("x"), "maybe", req.PayloadHash, nil), workflow.ErrInvalidInput)
		_, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: "00000000-0000-0000-0000-000000000000",
			Actor: reviewer("x"), Verdict: vocab.VerdictApprove, PayloadHash: "h"})
		require.ErrorIs(t, err, workflow.ErrNotFound)
		var n int
		require.NoError(t, b.Pool.QueryRow(ctx, `SELECT count(*) FROM decisions WHERE request_id = $1`, req.ID).Scan(&n))
		require.Zero(t, n, "refused decisions wrote nothing")
	})
}

func TestConcurrentDecisions(t *testing.T) {
	t.Parallel()
	var effects atomic.Int32
	b := testapp.Start(t, testapp.Options{Register: func(r *workflow.Registry, m *ai.Offline) { gated(r, m, &effects, nil) }})
	ctx := context.Background()
	run := b.WaitRun(t, start(t, b, "gated", "race", map[string]string{"Customer": "ann"}).ID, vocab.RunWaitingHuman)
	req := b.PendingRequest(t, run.ID)

	const n = 10
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			verdict, reason := vocab.VerdictApprove, ""
			if i%2 == 1 {
				verdict, reason = vocab.VerdictReject, "no"
			}
			_, errs[i] = b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: reviewer(fmt.Sprintf("r%d@example.com", i)),
				Verdict: verdict, Reason: reason, PayloadHash: req.PayloadHash})
		}()
	}
	wg.Wait()
	winners := 0
	for _, err := range errs {
		if err == nil {
			winners++
			continue
		}
		require.ErrorIs(t, err, workflow.ErrAlreadyDecided)
		var ad *workflow.AlreadyDecidedError
		require.ErrorAs(t, err, &ad)
		require.NotEmpty(t, ad.By)
		require.False(t, ad.At.IsZero())
	}
	require.Equal(t, 1, winners)
	var decisions, jobs int
	require.NoError(t, b.Pool.QueryRow(ctx, `SELECT count(*) FROM decisions WHERE request_id = $1`, req.ID).Scan(&decisions))
	require.NoError(t, b.Pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE args->>'run_id' = $1 AND (args->>'seq')::int = 1`, run.ID).Scan(&jobs))
	require.Equal(t, 1, decisions)
	done := b.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunRejected)
	if done.Status == vocab.RunCompleted {
		require.Equal(t, 1, jobs, "exactly one resume job")
		require.EqualValues(t, 1, effects.Load())
	} else {
		require.Equal(t, 0, jobs, "a rejection resumes nothing")
	}
}

func TestStart(t *testing.T) {
	t.Parallel()
	var effects atomic.Int32
	b := testapp.Start(t, testapp.Options{NoWorker: true, Register: func(r *workflow.Registry, m *ai.Offline) { gated(r, m, &effects, nil) }})
	ctx := context.Background()

	first := start(t, b, "gated", "same-key", map[string]string{"Customer": "a"})
	again, created, err := b.Engine.Start(ctx, workflow.StartParams{Workflow: "gated", BusinessKey: "same-key", Input: json.RawMessage(`{"Customer":"b"}`)})
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, first.ID, again.ID)

	for name, p := range map[string]workflow.StartParams{
		"UnknownWorkflow": {Workflow: "nope", BusinessKey: "k"},
		"MalformedJSON":   {Workflow: "gated", BusinessKey: "k", Input: json.RawMessage(`{"Customer":`)},
		"UnknownField":    {Workflow: "gated", BusinessKey: "k", Input: json.RawMessage(`{"Nope":1}`)},
		"WrongType":       {Workflow: "gated", BusinessKey: "k", Input: json.RawMessage(`{"Customer":5}`)},
		"NoKey":           {Workflow: "gated", BusinessKey: "  "},
		"NULInInput":      {Workflow: "gated", BusinessKey: "k", Input: json.RawMessage(`{"Customer":"a\u0000"}`)},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := b.Engine.Start(ctx, p)
			require.Error(t, err)
			require.True(t, errors.Is(err, workflow.ErrUnknownWorkflow) || errors.Is(err, workflow.ErrInvalidInput), err)
		})
	}
	t.Run("InternalWorkflow", func(t *testing.T) {
		// The approvals API's workflow is built in and Options.Internal:
		// only its service, with StartParams.Internal, starts it.
		_, _, err := b.Engine.Start(ctx, workflow.StartParams{Workflow: "countersign.approval", BusinessKey: "forged",
			Input: json.RawMessage(`{"action":{"kind":"search","summary":"x"},"idempotency_key":"k","user_id":1,"body_hash":"x"}`)})
		require.ErrorIs(t, err, workflow.ErrInvalidInput)
		require.Contains(t, err.Error(), "started only by its own service")
	})
	var runs, jobs, events int
	require.NoError(t, b.Pool.QueryRow(ctx, `SELECT count(*) FROM workflow_runs`).Scan(&runs))
	require.NoError(t, b.Pool.QueryRow(ctx, `SELECT count(*) FROM river_job`).Scan(&jobs))
	require.NoError(t, b.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events`).Scan(&events))
	require.Equal(t, 1, runs, "bad starts wrote nothing")
	require.Equal(t, 1, jobs)
	require.Equal(t, 1, events)
}

func TestCancel(t *testing.T) {
	t.Parallel()
	var effects atomic.Int32
	b := testapp.Start(t, testapp.Options{Register: func(r *workflow.Registry, m *ai.Offline) { gated(r, m, &effects, nil) }})
	ctx := context.Background()
	run := b.WaitRun(t, start(t, b, "gated", "cancel", map[string]string{"Customer": "a"}).ID, vocab.RunWaitingHuman)
	req := b.PendingRequest(t, run.ID)
	require.NoError(t, b.Engine.Cancel(ctx, run.ID, "admin@example.com"))
	require.ErrorIs(t, b.Engine.Cancel(ctx, run.ID, "admin@example.com"), workflow.ErrFinal)
	_, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: reviewer("r"), Verdict: vocab.VerdictApprove, PayloadHash: req.PayloadHash})
	require.ErrorIs(t, err, workflow.ErrAlreadyDecided, "a cancelled run's request cannot be decided")
	got, err := store.RunGet(ctx, b.Pool, run.ID)
	require.NoError(t, err)
	require.Equal(t, vocab.RunCancelled, got.Status)
}

func TestTransitions(t *testing.T) {
	t.Parallel()
	for _, s := range vocab.RunStatuses() {
		require.Equal(t, s == vocab.RunCompleted || s == vocab.RunFailed || s == vocab.RunRejected || s == vocab.RunCancelled ||
			s == vocab.RunCompensated || s == vocab.RunCompensationFailed, s.Final(), s)
		if !s.Final() {
			require.True(t, workflow.CanTransition(s, vocab.RunCancelled), "cancel works from %s", s)
		}
	}
	require.False(t, workflow.CanTransition(vocab.RunCompleted, vocab.RunRunning))
	require.False(t, workflow.CanTransition(vocab.RunWaitingHuman, vocab.RunRunning), "a waiting run resumes through queued")
}

func TestStepTimeout(t *testing.T) {
	t.Parallel()
	b := testapp.Start(t, testapp.Options{Register: func(r *workflow.Registry, _ *ai.Offline) {
		workflow.Register(r, "slow", func(ctx context.Context, _ struct{}) (int, error) {
			return workflow.Step(ctx, "call_slow_service", func(ctx context.Context) (int, error) {
				select {
				case <-time.After(5 * time.Second):
					return 1, nil
				case <-ctx.Done():
					return 0, ctx.Err()
				}
			})
		}, workflow.Options{StepTimeout: 50 * time.Millisecond})
	}})
	run := b.WaitRun(t, start(t, b, "slow", "s", struct{}{}).ID, vocab.RunRetrying)
	require.Equal(t, "timeout", *run.ErrorCode)
	require.Contains(t, *run.ErrorMessage, `step "call_slow_service" timed out after 50ms`)
	steps, err := store.StepList(context.Background(), b.Pool, run.ID)
	require.NoError(t, err)
	require.Equal(t, vocab.StepFailed, steps[0].Status, "the failed attempt is in the timeline")
}
