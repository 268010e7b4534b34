package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/client"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
)

// BatchOptions size the batch benchmark.
type BatchOptions struct {
	Batches int // batch decisions measured
	Size    int // items per batch
}

// BatchReport holds the results.
type BatchReport struct {
	Options       BatchOptions
	ServerP50     time.Duration // the decision POST, all items in one transaction
	ServerP95     time.Duration
	AllStartedP50 time.Duration // from the response to the last resumed run passing the gate
	AllStartedMax time.Duration
}

const batchBenchPolicy = `version: 1
rules:
  - name: bench-batch
    when: action.kind == "bench.tag"
    tier: batched
    batch: {group_by: [action.kind], max_size: %d, max_wait: 1h}
`

// Batch fills batches with real runs waiting at their gate, decides each in
// one POST of the batch form, and times the response and the resumption.
func Batch(ctx context.Context, pool *pgxpool.Pool, dbURL string, o BatchOptions, progress io.Writer) (*BatchReport, error) {
	rep := &BatchReport{Options: o}
	if _, err := store.WithTxV(ctx, pool, func(ctx context.Context, tx pgx.Tx) (*store.PolicyVersion, error) {
		return store.PolicyActivate(ctx, tx, fmt.Sprintf(batchBenchPolicy, o.Size), "bench", "bench")
	}); err != nil {
		return nil, err
	}
	if _, err := account.Create(ctx, pool, "reviewer@bench.example", "Reviewer", "reviewer", benchPassword, "bench"); err != nil {
		return nil, err
	}
	resumed := &resumeLog{at: map[string]time.Time{}}
	register := func(r *workflow.Registry, _ *ai.Offline) {
		workflow.Register(r, "bench_tag", func(ctx context.Context, in struct{ N int }) (int, error) {
			if _, err := workflow.RequestApproval(ctx, workflow.Action{Kind: "bench.tag", Summary: fmt.Sprint("Tag ticket ", in.N),
				Params: map[string]any{"ticket": in.N, "tag": "billing"}, Current: map[string]any{"tag": ""}}); err != nil {
				return 0, err
			}
			resumed.mark(workflow.RunID(ctx))
			return in.N, nil
		})
	}
	a, base, stop, err := startApp(ctx, pool, dbURL, 20, app.Options{Web: true, Worker: true, Register: register})
	if err != nil {
		return nil, err
	}
	defer stop()
	cl, err := client.SignIn(base, "reviewer@bench.example", benchPassword)
	if err != nil {
		return nil, err
	}

	var server, started []time.Duration
	for n := range o.Batches {
		fmt.Fprintf(progress, "batch: filling batch %d of %d with %d waiting runs ...\n", n+1, o.Batches, o.Size)
		batchID, items, err := fillBatch(ctx, a.Engine, pool, n, o.Size)
		if err != nil {
			return nil, err
		}
		form := url.Values{"action": {"approve_selected"}}
		for _, it := range items {
			form.Add("item", it.ID+":"+it.PayloadHash)
			form.Add("selected", it.ID)
		}
		t0 := time.Now()
		resp, _, err := cl.Post("/batches/"+batchID+"/decision", form)
		if err != nil {
			return nil, err
		}
		committed := time.Now()
		server = append(server, committed.Sub(t0))
		if resp.StatusCode != http.StatusSeeOther {
			return nil, fmt.Errorf("batch decision: %d", resp.StatusCode)
		}
		last, err := resumed.last(items, time.Minute)
		if err != nil {
			return nil, fmt.Errorf("batch %d: %w", n, err)
		}
		started = append(started, max(last.Sub(committed), 0))
	}
	rep.ServerP50, rep.ServerP95 = percentile(server, 50), percentile(server, 95)
	rep.AllStartedP50, rep.AllStartedMax = percentile(started, 50), percentile(started, 100)
	return rep, nil
}

// fillBatch starts size runs that each propose an item of batch n, and
// returns the batch once it is ready with all of them pending.
func fillBatch(ctx context.Context, engine *workflow.Engine, pool *pgxpool.Pool, n, size int) (string, []*store.Request, error) {
	for i := range size {
		in, _ := json.Marshal(map[string]int{"N": n*size + i})
		if _, _, err := engine.Start(ctx, workflow.StartParams{Workflow: "bench_tag", BusinessKey: fmt.Sprint("t-", n, "-", i),
			Input: in, StartedBy: "agent@bench.example"}); err != nil {
			return "", nil, err
		}
	}
	var batchID string
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		err := pool.QueryRow(ctx, `SELECT id FROM batches WHERE status = 'ready' AND size = $1
			AND (SELECT count(*) FROM approval_requests WHERE batch_id = batches.id AND status = 'pending') = $1`, size).Scan(&batchID)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return "", nil, fmt.Errorf("batch %d never filled", n)
		}
	}
	items, err := store.BatchItems(ctx, pool, batchID)
	return batchID, items, err
}

// resumeLog records when each run passed its gate after a decision.
type resumeLog struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (l *resumeLog) mark(runID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.at[runID] = time.Now()
}

// last waits until the run of every item has passed its gate and returns
// when the last one did; it gives up after within.
func (l *resumeLog) last(items []*store.Request, within time.Duration) (time.Time, error) {
	for deadline := time.Now().Add(within); ; time.Sleep(5 * time.Millisecond) {
		var last time.Time
		l.mu.Lock()
		all := true
		for _, it := range items {
			at, ok := l.at[it.RunID]
			if !ok {
				all = false
				break
			}
			last = maxTime(last, at)
		}
		l.mu.Unlock()
		if all {
			return last, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("not every run resumed within %s", within)
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
