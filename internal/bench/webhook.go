package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/notice/webhook"
	"github.com/countersign/countersign/internal/store"
)

// WebhookOptions size the webhook benchmark.
type WebhookOptions struct {
	Deliveries int // webhook deliveries sent to the local receiver
	RiverJobs  int // no-op jobs for the baseline
	Workers    int // the baseline's concurrency (as the engine suite's)
}

// WebhookReport holds the results.
type WebhookReport struct {
	Options WebhookOptions
	// RiverJobsPerS is the baseline: no-op River jobs per second, in the
	// same run on the same database.
	RiverJobsPerS float64
	// DeliveriesPerS is webhook deliveries per second: each a River job
	// that locks the outbox row, signs the body, POSTs it to a local
	// receiver over loopback and records the attempt.
	DeliveriesPerS float64
}

// Ratio is deliveries/s over raw River jobs/s.
func (r WebhookReport) Ratio() float64 { return r.DeliveriesPerS / r.RiverJobsPerS }

// Webhook measures webhook delivery throughput against a receiver on
// loopback (allow-listed, as COUNTERSIGN_CALLBACK_ALLOW would), as a ratio
// to raw River jobs per second. The deliveries are written first by a
// process with no worker, then a worker process sends them all; the time is
// from its start until the receiver has every one.
func Webhook(ctx context.Context, pool *pgxpool.Pool, dbURL string, o WebhookOptions, progress io.Writer) (*WebhookReport, error) {
	rep := &WebhookReport{Options: o}
	fmt.Fprintf(progress, "webhook: baseline, %d no-op River jobs ...\n", o.RiverJobs)
	var err error
	if rep.RiverJobsPerS, err = riverThroughput(ctx, pool, Options{Workers: o.Workers, RiverJobs: o.RiverJobs}); err != nil {
		return nil, err
	}

	var received atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		received.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	cfg := config.Config{DatabaseURL: dbURL, Workers: o.Workers, RescueAfter: 15 * time.Minute, ModelProvider: "offline", CallbackAllow: "127.0.0.1"}
	writer, _, stopWriter, err := startAppConfig(ctx, pool, cfg, app.Options{})
	if err != nil {
		return nil, err
	}
	hook, err := writer.Webhooks.Create(ctx, "http://"+ln.Addr().String()+"/hook", []string{"run.failed"}, "bench")
	if err != nil {
		stopWriter()
		return nil, err
	}
	fmt.Fprintf(progress, "webhook: writing %d deliveries ...\n", o.Deliveries)
	body := []byte(`{"id":1,"kind":"run.failed","created_at":"2026-11-22T00:00:00Z","detail":"bench","link":"https://cs.example.com/runs/x"}`)
	for done := 0; done < o.Deliveries; {
		n := min(500, o.Deliveries-done)
		err := store.WithTx(ctx, pool, func(ctx context.Context, tx pgx.Tx) error {
			for i := range n {
				if _, err := writer.Callbacks.Enqueue(ctx, tx, callback.Delivery{Subject: webhook.Subject(int64(done + i)), Event: "run.failed",
					WebhookID: hook.ID, URL: hook.URL, Body: body}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			stopWriter()
			return nil, err
		}
		done += n
	}
	stopWriter()

	fmt.Fprintf(progress, "webhook: sending them ...\n")
	start := time.Now()
	_, _, stop, err := startAppConfig(ctx, pool, cfg, app.Options{Worker: true})
	if err != nil {
		return nil, err
	}
	defer stop()
	deadline := time.Now().Add(10 * time.Minute)
	for received.Load() < int64(o.Deliveries) {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("webhook bench: %d of %d deliveries received in 10 minutes", received.Load(), o.Deliveries)
		}
		time.Sleep(2 * time.Millisecond)
	}
	rep.DeliveriesPerS = float64(o.Deliveries) / time.Since(start).Seconds()
	if n := received.Load(); n != int64(o.Deliveries) {
		return nil, errors.New("webhook bench: a delivery was sent twice")
	}
	return rep, nil
}
