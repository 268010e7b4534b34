package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/store"
)

// AuditOptions size the audit benchmark.
type AuditOptions struct {
	Writers int // concurrent appenders
	Appends int // appends in all
	Verify  int // events in the chain that is verified
}

// AuditReport holds the results.
type AuditReport struct {
	Options        AuditOptions
	BaselinePerS   float64       // plain inserts of the same rows, no chain
	AppendsPerS    float64       // audit appends with the chainer running
	ChainLag       time.Duration // from the last append's commit to it being chained
	ChainPerS      float64       // events linked per second by one chainer
	VerifyTime     time.Duration
	VerifiedEvents int64
}

// Audit measures appends (next to plain inserts of the same rows) and the
// verification of a long chain.
func Audit(ctx context.Context, pool *pgxpool.Pool, o AuditOptions, progress io.Writer) (*AuditReport, error) {
	rep := &AuditReport{Options: o}
	details := map[string]any{"verdict": "approve", "workflow": "lead_enrichment", "rule": "read-only", "tier": "auto",
		"summary": "Look up Initech in the CRM", "payload_hash": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}

	fmt.Fprintf(progress, "audit: baseline, %d plain inserts by %d writers ...\n", o.Appends, o.Writers)
	if _, err := pool.Exec(ctx, `CREATE TABLE bench_events (LIKE audit_events INCLUDING DEFAULTS)`); err != nil {
		return nil, err
	}
	var err error
	rep.BaselinePerS, err = concurrently(o.Writers, o.Appends, func() error {
		_, err := pool.Exec(ctx, `INSERT INTO bench_events (id, actor, kind, subject_type, subject_id, details)
			VALUES (nextval('audit_events_id_seq'), $1, $2, $3, $4, $5)`, "policy:read-only", "decision.auto", "request", "r", details)
		return err
	})
	if err != nil {
		return nil, err
	}

	fmt.Fprintf(progress, "audit: %d appends by %d writers with the chainer running ...\n", o.Appends, o.Writers)
	chainCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		audit.RunChainer(chainCtx, pool, 200*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	rep.AppendsPerS, err = concurrently(o.Writers, o.Appends, func() error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			_, err := store.AuditAppend(ctx, tx, "policy:read-only", "decision.auto", "request", "r", nil, details)
			return err
		})
	})
	done := time.Now()
	for err == nil {
		var n int64
		if n, err = store.AuditUnchainedCount(ctx, pool); n == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	rep.ChainLag = time.Since(done)
	stop()
	wg.Wait()
	if err != nil {
		return nil, err
	}

	fmt.Fprintf(progress, "audit: building a chain of %d events ...\n", o.Verify)
	if _, err := pool.Exec(ctx, `INSERT INTO audit_events (actor, kind, subject_type, subject_id, run_id, details)
		SELECT 'user' || (g % 50) || '@example.com', 'decision.recorded', 'request', g::text, gen_random_uuid(),
			jsonb_build_object('verdict', 'approve', 'rule', 'small-crm-update', 'tier', 'batched', 'n', g)
		FROM generate_series(1, $1::int - $2::int) g`, o.Verify, o.Appends); err != nil {
		return nil, err
	}
	t0 := time.Now()
	n, err := audit.Chain(ctx, pool)
	if err != nil {
		return nil, err
	}
	rep.ChainPerS = float64(n) / time.Since(t0).Seconds()
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE audit_events, audit_chain`); err != nil {
		return nil, err
	}

	fmt.Fprintln(progress, "audit: verifying ...")
	t0 = time.Now()
	res, err := audit.Verify(ctx, pool)
	if err != nil {
		return nil, err
	}
	rep.VerifyTime = time.Since(t0)
	rep.VerifiedEvents = res.Events
	if !res.OK() {
		return nil, fmt.Errorf("the benchmark chain does not verify at %d: %s", res.BrokenAt, res.Problem)
	}
	return rep, nil
}

// concurrently runs fn total times on writers goroutines and returns calls/s.
func concurrently(writers, total int, fn func() error) (float64, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	start := time.Now()
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(total) {
				if err := fn(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(total) / elapsed.Seconds(), nil
}
