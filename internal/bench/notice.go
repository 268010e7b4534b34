package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/notice"
	"github.com/countersign/countersign/internal/notice/email"
	"github.com/countersign/countersign/internal/notice/mailsink"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// NoticeOptions size the notification benchmark.
type NoticeOptions struct {
	Samples   int           // requests timed one at a time, each to a fresh reviewer
	Burst     int           // requests in the burst
	BurstTime time.Duration // spread over this long
	Reviewers int           // who hear of the burst
}

// NoticeReport holds the results.
type NoticeReport struct {
	Options NoticeOptions
	// Request committed → mail accepted by the SMTP server.
	MailP50, MailP99, MailMax time.Duration
	// Baseline: the same mail handed straight to the SMTP server by the
	// channel, no outbox, no jobs.
	DirectP50, DirectP99 time.Duration
	// The burst: messages each reviewer received, the events they carried,
	// and the most messages one reviewer got within any one minute.
	BurstMessages  []int
	BurstItems     []int
	MaxPerMinute   int
	MinSpacing     time.Duration // the shortest time between two messages to one reviewer
	BurstSpread    time.Duration // how long starting the burst's runs took
	LastDigestWait time.Duration // from the burst's last request to the last digest
}

const noticeBenchPolicy = `version: 1
rules:
  - name: bench-notice
    when: action.kind == "bench.notice"
    tier: explicit
    roles: [approver]
`

// Notice measures the notification path with real mail over SMTP to an
// in-process server: the latency from a request's commit to the mail's
// acceptance, and how a burst of requests coalesces into digests.
func Notice(ctx context.Context, pool *pgxpool.Pool, dbURL string, o NoticeOptions, progress io.Writer) (*NoticeReport, error) {
	rep := &NoticeReport{Options: o}
	sink, err := mailsink.Start()
	if err != nil {
		return nil, err
	}
	defer sink.Close()
	if _, err := store.WithTxV(ctx, pool, func(ctx context.Context, tx pgx.Tx) (*store.PolicyVersion, error) {
		return store.PolicyActivate(ctx, tx, noticeBenchPolicy, "bench", "bench")
	}); err != nil {
		return nil, err
	}
	register := func(r *workflow.Registry, _ *ai.Offline) {
		workflow.Register(r, "bench_notice", func(ctx context.Context, in struct{ N int }) (int, error) {
			_, err := workflow.RequestApproval(ctx, workflow.Action{Kind: "bench.notice", Summary: fmt.Sprint("Notify about ", in.N),
				Params: map[string]any{"n": in.N}, Risk: "low"})
			return in.N, err
		})
	}
	ch := email.New(sink.Config())
	a, _, stop, err := startApp(ctx, pool, dbURL, 20, app.Options{Worker: true, Register: register, Channels: []notice.Channel{ch}})
	if err != nil {
		return nil, err
	}
	defer stop()

	fmt.Fprintf(progress, "notice: %d requests, each mailed to a fresh reviewer ...\n", o.Samples)
	if err := noticeLatency(ctx, a, pool, sink, o, rep); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "notice: baseline, %d mails handed straight to the SMTP server ...\n", o.Samples)
	var direct []time.Duration
	for i := range o.Samples {
		t0 := time.Now()
		if err := ch.Send(ctx, notice.Message{To: notice.Recipient{Email: fmt.Sprintf("direct-%d@bench.example", i)},
			Items: []notice.Item{{Kind: notice.RequestWaiting, Title: notice.RequestWaiting.Label(), Summary: "direct"}}}); err != nil {
			return nil, err
		}
		direct = append(direct, time.Since(t0))
	}
	rep.DirectP50, rep.DirectP99 = percentile(direct, 50), percentile(direct, 99)

	fmt.Fprintf(progress, "notice: a burst of %d requests in %s to %d reviewers; waiting for the digests ...\n", o.Burst, o.BurstTime, o.Reviewers)
	return rep, noticeBurst(ctx, a, pool, sink, o, rep)
}

// noticeLatency times each request from its commit to its mail's
// acceptance. Each goes to a reviewer of its own (the one before is
// disabled), so that no coalescing window delays it.
func noticeLatency(ctx context.Context, a *app.App, pool *pgxpool.Pool, sink *mailsink.Sink, o NoticeOptions, rep *NoticeReport) error {
	var lat []time.Duration
	var prev *store.User
	for i := range o.Samples {
		u, err := store.UserInsert(ctx, pool, fmt.Sprintf("lat-%d@bench.example", i), "Reviewer", string(vocab.RoleApprover), "x")
		if err != nil {
			return err
		}
		if prev != nil {
			if err := store.UserSetDisabled(ctx, pool, prev.ID, true); err != nil {
				return err
			}
		}
		prev = u
		in, _ := json.Marshal(map[string]int{"N": i})
		run, _, err := a.Engine.Start(ctx, workflow.StartParams{Workflow: "bench_notice", BusinessKey: fmt.Sprint("lat-", i), Input: in, StartedBy: "agent@bench.example"})
		if err != nil {
			return err
		}
		at, err := waitMail(sink, u.Email, 30*time.Second)
		if err != nil {
			return err
		}
		// The request's row is stamped inside the transaction that commits
		// it: the latency is measured from a moment before the commit.
		var created time.Time
		if err := pool.QueryRow(ctx, `SELECT created_at FROM approval_requests WHERE run_id = $1`, run.ID).Scan(&created); err != nil {
			return err
		}
		lat = append(lat, at.Sub(created))
	}
	if prev != nil {
		if err := store.UserSetDisabled(ctx, pool, prev.ID, true); err != nil {
			return err
		}
	}
	rep.MailP50, rep.MailP99, rep.MailMax = percentile(lat, 50), percentile(lat, 99), percentile(lat, 100)
	return nil
}

func waitMail(sink *mailsink.Sink, to string, within time.Duration) (time.Time, error) {
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		for _, m := range sink.Mails() {
			if len(m.To) == 1 && strings.EqualFold(m.To[0], to) {
				return m.At, nil
			}
		}
	}
	return time.Time{}, fmt.Errorf("no mail to %s within %s", to, within)
}

// noticeBurst starts o.Burst requests spread over o.BurstTime and counts,
// once every event has reached every reviewer, the messages each received
// and the most within any one minute.
func noticeBurst(ctx context.Context, a *app.App, pool *pgxpool.Pool, sink *mailsink.Sink, o NoticeOptions, rep *NoticeReport) error {
	var addrs []string
	for i := range o.Reviewers {
		u, err := store.UserInsert(ctx, pool, fmt.Sprintf("burst-%d@bench.example", i), "Reviewer", string(vocab.RoleApprover), "x")
		if err != nil {
			return err
		}
		addrs = append(addrs, u.Email)
	}
	// Runs are started at an even pace by a few starters, so that one slow
	// start does not stretch the burst.
	start := time.Now()
	pace := o.BurstTime / time.Duration(o.Burst)
	next := make(chan int)
	errc := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				in, _ := json.Marshal(map[string]int{"N": i})
				if _, _, err := a.Engine.Start(ctx, workflow.StartParams{Workflow: "bench_notice", BusinessKey: fmt.Sprint("burst-", i), Input: in,
					StartedBy: "agent@bench.example"}); err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		}()
	}
	for i := range o.Burst {
		if wait := time.Until(start.Add(pace * time.Duration(i))); wait > 0 {
			time.Sleep(wait)
		}
		next <- i
	}
	close(next)
	wg.Wait()
	rep.BurstSpread = time.Since(start)
	select {
	case err := <-errc:
		return err
	default:
	}
	var lastRequest time.Time
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if err := pool.QueryRow(ctx, `SELECT count(*) = $1, coalesce(max(created_at), now()) FROM approval_requests
			WHERE run_id IN (SELECT id FROM workflow_runs WHERE business_key LIKE 'burst-%')`, o.Burst).Scan(new(bool), &lastRequest); err != nil {
			return err
		}
		got := burstItems(sink, addrs)
		done := true
		for _, n := range got {
			done = done && n >= o.Burst
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the burst's events did not all arrive: %v", got)
		}
	}
	rep.BurstItems = burstItems(sink, addrs)
	var last time.Time
	for _, addr := range addrs {
		var at []time.Time
		for _, m := range sink.Mails() {
			if len(m.To) == 1 && strings.EqualFold(m.To[0], addr) {
				at = append(at, m.At)
				last = maxTime(last, m.At)
			}
		}
		rep.BurstMessages = append(rep.BurstMessages, len(at))
		sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
		for i := 1; i < len(at); i++ {
			if d := at[i].Sub(at[i-1]); rep.MinSpacing == 0 || d < rep.MinSpacing {
				rep.MinSpacing = d
			}
		}
		for i := range at {
			n := 0
			for j := i; j < len(at) && at[j].Sub(at[i]) < time.Minute; j++ {
				n++
			}
			rep.MaxPerMinute = max(rep.MaxPerMinute, n)
		}
	}
	rep.LastDigestWait = last.Sub(lastRequest)
	return nil
}

// burstItems counts, per reviewer, the events their mails carried: a digest
// says how many in its first line, a single message carries one.
func burstItems(sink *mailsink.Sink, addrs []string) []int {
	out := make([]int, len(addrs))
	for _, m := range sink.Mails() {
		if len(m.To) != 1 {
			continue
		}
		for i, addr := range addrs {
			if strings.EqualFold(m.To[0], addr) {
				out[i] += mailItems(m.Data)
			}
		}
	}
	return out
}

func mailItems(raw []byte) int {
	msg, err := mail.ReadMessage(strings.NewReader(string(raw)))
	if err != nil {
		return 0
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		return 0
	}
	var n int
	if _, err := fmt.Sscanf(subject, "Countersign: %d notifications", &n); err == nil {
		return n
	}
	return 1
}
