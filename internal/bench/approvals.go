package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/askclient"
	"github.com/countersign/countersign/internal/client"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/notify"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/jobs"
)

// ApprovalsOptions size the approvals API benchmark.
type ApprovalsOptions struct {
	Agents    int // concurrent agents, each with a token of its own
	Approvals int // approvals each agent files in each phase
	// Paced: auto-tier approvals each agent files in the paced phase, one
	// every Interval on average (0 skips the phase).
	Paced    int
	Interval time.Duration
}

// paced reports whether the paced phase runs.
func (o ApprovalsOptions) paced() bool { return o.Paced > 0 && o.Interval > 0 }

// PacedRan reports whether the report has the paced phase's results.
func (r ApprovalsReport) PacedRan() bool { return r.Options.paced() }

// ApprovalsReport holds the results. Every latency is taken on the client
// side, on loopback, with the same clock.
type ApprovalsReport struct {
	Options ApprovalsOptions
	// Baseline: GET /api/v1/approvals/{id} of a decided approval (no wait)
	// by the same agents through the same clients, interleaved with the
	// auto-tier POSTs so that both see the same load.
	BaselineP50, BaselineP99 time.Duration
	// Commit: one single-row INSERT committed on its own, by the same
	// agents in the same loop: the durable-write floor, since a POST
	// commits several times and a GET never.
	CommitP50, CommitP99 time.Duration
	// Auto: POST /api/v1/approvals of an action the policy approves, each
	// agent filing the next the moment the last returns (a closed loop: the
	// machine saturated, so latency is its capacity shared by 20).
	AutoP50, AutoP99 time.Duration
	// Paced: the same POST from the same agents, each filing one at random
	// moments (Poisson arrivals) one Interval apart on average, as agents
	// that think between tool calls do; timed from the moment it was due,
	// so that a POST held up behind the agent's previous one counts the
	// wait. PacedGet is the GET after each (the same baseline as above, at
	// this load), PacedRate the POSTs per second the phase achieved.
	PacedP50, PacedP99, PacedMax   time.Duration
	PacedGetP50, PacedGetP99       time.Duration
	PacedCommitP50, PacedCommitP99 time.Duration // the single-row INSERT, after each GET
	PacedRate                      float64
	// Event: from the explicit POST's 202 to the reviewer's live stream
	// (/events) sending the "inbox" event that refreshes the open inbox.
	EventP50, EventP99 time.Duration
	// Notify: the bare live path, the baseline of Event, Visible and Poll:
	// from a pg_notify sent on its own (one autocommit statement, by the
	// benchmark, as the agents work) having committed to the reviewer's
	// stream sending the event it causes ("run-<id>", which the stream sends
	// without a window). Timed from the statement's return as the others
	// are from their 202: the commit itself is not in it.
	NotifyP50, NotifyP99 time.Duration
	// Visible: from the 202 to the reviewer's refreshed inbox rows
	// (/inbox/rows, fetched on that event) containing the request.
	VisibleP50, VisibleP99, VisibleMax time.Duration
	// Poll: from the decision POST's response to the agent's long poll
	// (?wait=60s) returning with the outcome; PollCommit from the
	// decision's decided_at (taken inside its transaction, so a little
	// before the commit) to the same return.
	PollP50, PollP99             time.Duration
	PollCommitP50, PollCommitP99 time.Duration
	// Callback: from the decision POST's response to the signed callback
	// arriving at the local receiver.
	CallbackP50, CallbackP99, CallbackMax time.Duration
	// Solo: one agent alone, one call at a time: the same POST and GET
	// without contention, and what each costs the database (statements and
	// commits through the process's pool per call, River's follow-up work
	// included, the idle rate of the process's background loops taken out).
	SoloAutoP50, SoloGetP50     time.Duration
	AutoStatements, AutoCommits float64
	GetStatements, GetCommits   float64
	// LoadBefore and LoadAfter are /proc/loadavg when the suite started and
	// ended: the machine is shared.
	LoadBefore, LoadAfter string
}

const approvalsPolicy = `version: 1
rules:
  - name: bench-auto
    when: action.kind == "bench.read"
    tier: auto
  - name: bench-explicit
    when: action.kind == "bench.write"
    tier: explicit
`

// Approvals measures the approvals API through a live server process (web
// and workers, callbacks allowed to loopback) with o.Agents agents at once.
func Approvals(ctx context.Context, pool *pgxpool.Pool, dbURL string, o ApprovalsOptions, progress io.Writer) (*ApprovalsReport, error) {
	rep := &ApprovalsReport{Options: o, LoadBefore: loadavg()}
	if _, err := store.WithTxV(ctx, pool, func(ctx context.Context, tx pgx.Tx) (*store.PolicyVersion, error) {
		return store.PolicyActivate(ctx, tx, approvalsPolicy, "bench", "bench")
	}); err != nil {
		return nil, err
	}
	agentTokens := make([]string, o.Agents)
	for i := range agentTokens {
		email := fmt.Sprintf("agent%d@bench.example", i)
		if _, err := account.Create(ctx, pool, email, "Agent", "reviewer", benchPassword, "bench"); err != nil {
			return nil, err
		}
		_, secret, err := account.CreateToken(ctx, pool, account.TokenParams{Email: email, Name: "bench agent",
			Scopes: []string{account.ScopeApprovalsWrite}, By: "bench"})
		if err != nil {
			return nil, err
		}
		agentTokens[i] = secret
	}
	const reviewer = "reviewer@bench.example"
	if _, err := account.Create(ctx, pool, reviewer, "Reviewer", "reviewer", benchPassword, "bench"); err != nil {
		return nil, err
	}
	_, reviewerToken, err := account.CreateToken(ctx, pool, account.TokenParams{Email: reviewer, Name: "bench reviewer",
		Scopes: []string{account.ScopeRequestsRead, account.ScopeDecide}, By: "bench"})
	if err != nil {
		return nil, err
	}

	recv, err := newReceiver()
	if err != nil {
		return nil, err
	}
	defer recv.close()
	cfg := benchAppConfig(dbURL, o.Agents)
	cfg.CallbackAllow = "127.0.0.1/32"
	// The process gets a pool of its own, sized as the command's, whose
	// tracer counts what each call costs the database.
	pc, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, err
	}
	pc.MaxConns = int32(o.Agents + jobs.CallbackWorkers + 12)
	count := &counter{}
	pc.ConnConfig.Tracer = count
	appPool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, err
	}
	defer appPool.Close()
	_, base, stop, err := startAppConfig(ctx, appPool, cfg, app.Options{Web: true, Worker: true})
	if err != nil {
		return nil, err
	}
	defer stop()
	agents := make([]*askclient.Client, o.Agents)
	for i := range agents {
		agents[i] = askclient.New(base, agentTokens[i])
		// One connection pool per agent, as separate agents would have:
		// a shared transport keeps only two idle connections per host.
		agents[i].HTTP.Transport = &http.Transport{MaxIdleConnsPerHost: 4}
	}

	fmt.Fprintf(progress, "approvals: one agent alone, %d auto-tier POSTs then %d GETs ...\n", o.Approvals, o.Approvals)
	if err := soloPhase(ctx, agents[0], count, o, rep); err != nil {
		return nil, fmt.Errorf("solo: %w", err)
	}
	// The commit floor's table, written by the paced and closed loops.
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS bench_commits (id bigserial PRIMARY KEY, agent int, at timestamptz DEFAULT now())`); err != nil {
		return nil, err
	}
	if o.paced() {
		fmt.Fprintf(progress, "approvals: %d agents × %d auto-tier POSTs, one every %s on average each ...\n", o.Agents, o.Paced, o.Interval)
		if err := pacedPhase(ctx, agents, pool, o, rep); err != nil {
			return nil, fmt.Errorf("paced: %w", err)
		}
	}
	fmt.Fprintf(progress, "approvals: %d agents × %d auto-tier POSTs, interleaved with baseline GETs ...\n", o.Agents, o.Approvals)
	if err := autoPhase(ctx, agents, pool, o, rep); err != nil {
		return nil, fmt.Errorf("auto tier: %w", err)
	}
	fmt.Fprintf(progress, "approvals: %d agents × %d explicit approvals: inbox, decision, long poll, callback ...\n", o.Agents, o.Approvals)
	if err := explicitPhase(ctx, base, pool, agents, reviewer, reviewerToken, recv, o, rep); err != nil {
		return nil, fmt.Errorf("explicit tier: %w", err)
	}
	rep.LoadAfter = loadavg()
	return rep, nil
}

// benchAppConfig is the configuration startApp gives a process.
func benchAppConfig(dbURL string, workers int) config.Config {
	return config.Config{DatabaseURL: dbURL, Workers: workers, RescueAfter: 15 * time.Minute, ModelProvider: "offline"}
}

func action(kind string, agent, i int) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"kind": kind, "target": fmt.Sprintf("order %d-%d", agent, i),
		"summary": fmt.Sprintf("Refund %d.00 EUR for order %d-%d", 10+i, agent, i), "params": map[string]any{"amount": 10 + i},
		"risk": "low", "reversible": true})
	return b
}

// autoPhase has every agent file auto-tier approvals, each followed by the
// baseline: a plain read of the approval just decided, through the same
// client, so that the ratio of the two cancels the machine's load.
func autoPhase(ctx context.Context, agents []*askclient.Client, pool *pgxpool.Pool, o ApprovalsOptions, rep *ApprovalsReport) error {
	var mu sync.Mutex
	var auto, baseline, commit []time.Duration
	err := eachAgent(agents, func(n int, c *askclient.Client) error {
		// A first call opens the connection, which is not what is measured.
		if _, err := c.Submit(ctx, askclient.Request{IdempotencyKey: fmt.Sprintf("warm-%d", n), Action: action("bench.read", n, -1)}); err != nil {
			return err
		}
		for i := range o.Approvals {
			d, b, cm, err := autoCall(ctx, c, pool, n, fmt.Sprintf("auto-%d-%d", n, i), i, time.Now())
			if err != nil {
				return err
			}
			mu.Lock()
			auto, baseline, commit = append(auto, d), append(baseline, b), append(commit, cm)
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return err
	}
	rep.AutoP50, rep.AutoP99 = percentile(auto, 50), percentile(auto, 99)
	rep.BaselineP50, rep.BaselineP99 = percentile(baseline, 50), percentile(baseline, 99)
	rep.CommitP50, rep.CommitP99 = percentile(commit, 50), percentile(commit, 99)
	return nil
}

// autoCall files one auto-tier approval as agent n, then reads it back
// (the GET baseline) and commits one single-row INSERT (the durable-write
// floor), and returns how long each took: the POST from from (when it was
// sent, or when it was due).
func autoCall(ctx context.Context, c *askclient.Client, pool *pgxpool.Pool, n int, key string, i int, from time.Time) (post, get, commit time.Duration, err error) {
	a, err := c.Submit(ctx, askclient.Request{IdempotencyKey: key, Action: action("bench.read", n, i)})
	post = time.Since(from)
	if err != nil {
		return 0, 0, 0, err
	}
	if a.Status != askclient.StatusApproved {
		return 0, 0, 0, fmt.Errorf("auto-tier approval %s is %s", a.ID, a.Status)
	}
	t0 := time.Now()
	if _, err := c.Get(ctx, a.ID, 0); err != nil {
		return 0, 0, 0, err
	}
	get = time.Since(t0)
	t0 = time.Now()
	if _, err := pool.Exec(ctx, `INSERT INTO bench_commits (agent) VALUES ($1)`, n); err != nil {
		return 0, 0, 0, err
	}
	return post, get, time.Since(t0), nil
}

// pacedPhase has every agent file o.Paced auto-tier approvals at random
// moments, o.Interval apart on average (exponential gaps: the arrivals of
// independent agents), each followed by a GET of it and a single-row
// INSERT committed on its own, the baselines of the closed loop below.
// Latency is taken from the moment a POST was due, not from when it was
// sent: an agent still waiting for its previous POST sends late, and that
// lateness is part of what it measures (no coordinated omission).
func pacedPhase(ctx context.Context, agents []*askclient.Client, pool *pgxpool.Pool, o ApprovalsOptions, rep *ApprovalsReport) error {
	var mu sync.Mutex
	var posts, gets, commits []time.Duration
	start := time.Now()
	err := eachAgent(agents, func(n int, c *askclient.Client) error {
		// A first call opens the connection, which is not what is measured.
		if _, err := c.Submit(ctx, askclient.Request{IdempotencyKey: fmt.Sprintf("warm-%d", n), Action: action("bench.read", n, -1)}); err != nil {
			return err
		}
		rng := rand.New(rand.NewPCG(uint64(n), 7))
		due := time.Now()
		for i := range o.Paced {
			due = due.Add(time.Duration(rng.ExpFloat64() * float64(o.Interval)))
			time.Sleep(time.Until(due))
			d, g, cm, err := autoCall(ctx, c, pool, n, fmt.Sprintf("paced-%d-%d", n, i), 1000+i, due)
			if err != nil {
				return err
			}
			mu.Lock()
			posts, gets, commits = append(posts, d), append(gets, g), append(commits, cm)
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return err
	}
	rep.PacedRate = float64(len(posts)) / time.Since(start).Seconds()
	rep.PacedP50, rep.PacedP99, rep.PacedMax = percentile(posts, 50), percentile(posts, 99), percentile(posts, 100)
	rep.PacedGetP50, rep.PacedGetP99 = percentile(gets, 50), percentile(gets, 99)
	rep.PacedCommitP50, rep.PacedCommitP99 = percentile(commits, 50), percentile(commits, 99)
	return nil
}

// counter counts the statements (and among them the commits) sent through
// a pool. A commit is an explicit COMMIT, or a statement that writes sent
// outside a transaction (it commits on its own: an UPDATE on the pool, a
// pg_notify after a commit).
type counter struct{ statements, commits atomic.Int64 }

func (c *counter) TraceQueryStart(ctx context.Context, conn *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	c.statements.Add(1)
	if strings.EqualFold(d.SQL, "commit") || conn.PgConn().TxStatus() == 'I' && writes(d.SQL) {
		c.commits.Add(1)
	}
	return ctx
}

// writes reports whether a statement sent on its own commits a write: a
// sqlc query whose name says so, or SQL that inserts, updates, deletes or
// notifies.
func writes(sql string) bool {
	s := strings.ToLower(sql)
	for _, w := range []string{"insert ", "update ", "delete ", "pg_notify"} {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

func (c *counter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (c *counter) read() (int64, int64) { return c.statements.Load(), c.commits.Load() }

// soloPhase times one agent's calls one at a time and counts what each
// costs the database.
func soloPhase(ctx context.Context, c *askclient.Client, count *counter, o ApprovalsOptions, rep *ApprovalsReport) error {
	if _, err := c.Submit(ctx, askclient.Request{IdempotencyKey: "solo-warm", Action: action("bench.read", -1, -1)}); err != nil {
		return err
	}
	// What the idle process sends (River's polling, the audit chainer,
	// leases), per second, to take out of the counts below.
	const settle = time.Second
	time.Sleep(settle)
	s0, c0 := count.read()
	time.Sleep(settle)
	s1, c1 := count.read()
	idleS, idleC := float64(s1-s0)/settle.Seconds(), float64(c1-c0)/settle.Seconds()
	per := func(t0 time.Time, s0, c0 int64) (float64, float64) {
		time.Sleep(settle) // River's job for each run, and the chainer, finish
		s, cm := count.read()
		el := time.Since(t0).Seconds()
		n := float64(o.Approvals)
		return max(float64(s-s0)-idleS*el, 0) / n, max(float64(cm-c0)-idleC*el, 0) / n
	}
	ids := make([]string, o.Approvals)
	lat := make([]time.Duration, o.Approvals)
	t0 := time.Now()
	s0, c0 = count.read()
	for i := range ids {
		t := time.Now()
		a, err := c.Submit(ctx, askclient.Request{IdempotencyKey: fmt.Sprintf("solo-%d", i), Action: action("bench.read", -1, i)})
		if err != nil {
			return err
		}
		lat[i], ids[i] = time.Since(t), a.ID
	}
	rep.SoloAutoP50 = percentile(lat, 50)
	rep.AutoStatements, rep.AutoCommits = per(t0, s0, c0)
	t0 = time.Now()
	s0, c0 = count.read()
	for i, id := range ids {
		t := time.Now()
		if _, err := c.Get(ctx, id, 0); err != nil {
			return err
		}
		lat[i] = time.Since(t)
	}
	rep.SoloGetP50 = percentile(lat, 50)
	rep.GetStatements, rep.GetCommits = per(t0, s0, c0)
	return nil
}

// eachAgent runs fn for every agent at once and returns the first error.
func eachAgent(agents []*askclient.Client, fn func(n int, c *askclient.Client) error) error {
	errs := make([]error, len(agents))
	var wg sync.WaitGroup
	for n, c := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[n] = fn(n, c)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// flow is what one explicit approval went through, by request id.
type flow struct {
	approvalID string
	accepted   time.Time // the 202 received
	polling    chan struct{}
	event      time.Time // the "inbox" event whose rows first showed it
	visible    time.Time // the inbox rows first showing it
	decided    time.Time // the decision POST's response
	decidedAt  time.Time // the decision's own timestamp
	returned   time.Time // the long poll's return
}

// flows tracks explicit approvals between the agents, the reviewer's
// inbox and the decider.
type flows struct {
	mu   sync.Mutex
	byID map[string]*flow // by request id
}

func (f *flows) get(requestID string) *flow {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl := f.byID[requestID]
	if fl == nil {
		fl = &flow{polling: make(chan struct{})}
		f.byID[requestID] = fl
	}
	return fl
}

// explicitPhase: every agent files explicit approvals one after the other
// with a callback, and long-polls each; a reviewer watches the inbox live
// and decides each request as it appears, through the API.
func explicitPhase(ctx context.Context, base string, pool *pgxpool.Pool, agents []*askclient.Client, reviewer, reviewerToken string,
	recv *receiver, o ApprovalsOptions, rep *ApprovalsReport) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fs := &flows{byID: map[string]*flow{}}
	seen := make(chan string, o.Agents*o.Approvals)
	watcher, err := client.SignIn(base, reviewer, benchPassword)
	if err != nil {
		return err
	}
	watchErr := make(chan error, 1)
	ready := make(chan struct{})
	// The stream has a context of its own: it is stopped before seen is
	// closed, so that it never sends on a closed channel.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	pg := &pings{sent: map[string]time.Time{}, arrived: map[string]time.Time{}}
	go func() { watchErr <- watchInbox(watchCtx, watcher, fs, pg, seen, ready) }()
	select {
	case <-ready:
	case err := <-watchErr:
		return fmt.Errorf("inbox stream: %w", err)
	}

	// Deciders: reviewers who decide what appears, a few at a time, each
	// once the agent's long poll is under way.
	decider := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	var dwg sync.WaitGroup
	decideErrs := make(chan error, 4)
	for range 4 {
		dwg.Add(1)
		go func() {
			defer dwg.Done()
			for id := range seen {
				if err := decide(ctx, decider, base, reviewerToken, fs, id); err != nil {
					decideErrs <- fmt.Errorf("decide %s: %w", id, err)
					cancel()
					return
				}
			}
		}()
	}

	// The baseline: bare notifications, paced, for as long as the agents work.
	pingCtx, stopPings := context.WithCancel(ctx)
	pinged := make(chan error, 1)
	go func() { pinged <- pg.run(pingCtx, pool, 20*time.Millisecond) }()

	err = eachAgent(agents, func(n int, c *askclient.Client) error {
		for i := range o.Approvals {
			a, err := c.Submit(ctx, askclient.Request{IdempotencyKey: fmt.Sprintf("explicit-%d-%d", n, i),
				Action: action("bench.write", n, i), CallbackURL: recv.url})
			accepted := time.Now()
			if err != nil {
				return err
			}
			var w struct {
				RequestID string `json:"request_id"`
			}
			if err := json.Unmarshal(a.Raw, &w); err != nil || a.Status != askclient.StatusPending || w.RequestID == "" {
				return fmt.Errorf("explicit approval %s is %s (request %q)", a.ID, a.Status, w.RequestID)
			}
			fl := fs.get(w.RequestID)
			fs.mu.Lock()
			fl.approvalID, fl.accepted = a.ID, accepted
			fs.mu.Unlock()
			close(fl.polling)
			done, err := c.Get(ctx, a.ID, 60*time.Second)
			returned := time.Now()
			if err != nil {
				return err
			}
			if !done.Decided() {
				return fmt.Errorf("approval %s still %s after the long poll", a.ID, done.Status)
			}
			var d struct {
				Outcome struct {
					DecidedAt time.Time `json:"decided_at"`
				} `json:"outcome"`
			}
			if err := json.Unmarshal(done.Raw, &d); err != nil {
				return fmt.Errorf("decode approval %s: %w", a.ID, err)
			}
			fs.mu.Lock()
			fl.returned, fl.decidedAt = returned, d.Outcome.DecidedAt
			fs.mu.Unlock()
		}
		return nil
	})
	if err != nil {
		cancel() // deciders waiting for a long poll that will not come
	}
	stopPings()
	if perr := <-pinged; perr != nil {
		err = errors.Join(err, fmt.Errorf("notify baseline: %w", perr))
	}
	time.Sleep(200 * time.Millisecond) // the last pings reach the stream
	stopWatch()
	if werr := <-watchErr; werr != nil {
		err = errors.Join(err, fmt.Errorf("inbox stream: %w", werr))
	}
	close(seen)
	dwg.Wait()
	select {
	case derr := <-decideErrs:
		err = errors.Join(err, derr)
	default:
	}
	if err != nil {
		return err
	}
	// Every callback should arrive within seconds of its decision.
	total := o.Agents * o.Approvals
	deadline := time.Now().Add(30 * time.Second)
	for recv.count() < total && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if n := recv.count(); n < total {
		return fmt.Errorf("only %d of %d callbacks arrived within 30 s of the last decision", n, total)
	}

	var event, visible, poll, pollCommit, cb []time.Duration
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, fl := range fs.byID {
		if fl.approvalID == "" {
			continue
		}
		if fl.event.IsZero() || fl.visible.IsZero() || fl.decided.IsZero() {
			return fmt.Errorf("approval %s: incomplete measurement", fl.approvalID)
		}
		// A row can show before the agent has read its 202: that counts as
		// visible at once.
		event = append(event, max(fl.event.Sub(fl.accepted), 0))
		visible = append(visible, max(fl.visible.Sub(fl.accepted), 0))
		poll = append(poll, fl.returned.Sub(fl.decided))
		pollCommit = append(pollCommit, fl.returned.Sub(fl.decidedAt))
		cb = append(cb, recv.at(fl.approvalID).Sub(fl.decided))
	}
	notified := pg.latencies()
	if len(notified) == 0 {
		return errors.New("no bare notification reached the stream")
	}
	rep.NotifyP50, rep.NotifyP99 = percentile(notified, 50), percentile(notified, 99)
	rep.EventP50, rep.EventP99 = percentile(event, 50), percentile(event, 99)
	rep.VisibleP50, rep.VisibleP99, rep.VisibleMax = percentile(visible, 50), percentile(visible, 99), percentile(visible, 100)
	rep.PollP50, rep.PollP99 = percentile(poll, 50), percentile(poll, 99)
	rep.PollCommitP50, rep.PollCommitP99 = percentile(pollCommit, 50), percentile(pollCommit, 99)
	rep.CallbackP50, rep.CallbackP99, rep.CallbackMax = percentile(cb, 50), percentile(cb, 99), percentile(cb, 100)
	return nil
}

// watchInbox is a reviewer with the inbox open: it follows the console's
// live stream and, on every "inbox" event, fetches the rows as the page
// does (hx-get /inbox/rows) and hands each new request to the deciders.
func watchInbox(ctx context.Context, c *client.Client, fs *flows, pg *pings, seen chan<- string, ready chan<- struct{}) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+"/events", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /events: %d", resp.StatusCode)
	}
	// A page reads its stream and fetches its rows apart (htmx: one fetch at
	// a time, the last event queued): so does the watcher, so that a fetch
	// under way delays neither the stream's events nor the pings.
	f := &rowFetcher{c: c, fs: fs, seen: seen, signal: make(chan struct{}, 1), shown: map[string]bool{}}
	fctx, stopFetch := context.WithCancel(ctx)
	fetched := make(chan error, 1)
	go func() { fetched <- f.run(fctx) }()
	defer func() { stopFetch(); <-fetched }() // seen is closed after this returns
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "event: connected" {
			close(ready)
			continue
		}
		if id, ok := strings.CutPrefix(line, "event: run-"); ok {
			pg.arrival(id)
			continue
		}
		if line != "event: inbox" {
			continue
		}
		f.trigger(time.Now())
		select {
		case err := <-fetched:
			fetched <- err // for the deferred wait
			if err != nil && ctx.Err() == nil {
				return err
			}
		default:
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("the live stream ended: %w", sc.Err())
}

// rowFetcher fetches the inbox's rows after "inbox" events, one fetch at a
// time, and hands each request seen for the first time to the deciders.
type rowFetcher struct {
	c      *client.Client
	fs     *flows
	seen   chan<- string
	signal chan struct{}
	mu     sync.Mutex
	at     time.Time // the last event not yet fetched for
	shown  map[string]bool
}

// trigger queues a fetch for an event received at at; events that arrive
// while one is queued share it, and a row it shows first counts from the
// last of them (the first after the request was created).
func (f *rowFetcher) trigger(at time.Time) {
	f.mu.Lock()
	f.at = at
	f.mu.Unlock()
	select {
	case f.signal <- struct{}{}:
	default:
	}
}

func (f *rowFetcher) run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-f.signal:
		}
		f.mu.Lock()
		at := f.at
		f.mu.Unlock()
		ids, err := inboxRows(ctx, f.c)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		visible := time.Now()
		for _, id := range ids {
			if f.shown[id] {
				continue
			}
			f.shown[id] = true
			fl := f.fs.get(id)
			f.fs.mu.Lock()
			fl.event, fl.visible = at, visible
			f.fs.mu.Unlock()
			f.seen <- id
		}
	}
}

// pings are the bare notifications of the live path's baseline, by the id
// each names: when its statement returned, when the stream sent its event.
type pings struct {
	mu            sync.Mutex
	sent, arrived map[string]time.Time
}

// run sends a notification about a made-up run every interval until ctx
// ends, each one statement on the pool, as notify.Send does after a commit.
func (p *pings) run(ctx context.Context, pool *pgxpool.Pool, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		id := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		msg, _ := json.Marshal(notify.Message{Type: notify.KindRun, ID: id, Status: "running"})
		if err := store.Notify(ctx, pool, string(msg)); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		p.mu.Lock()
		p.sent[id] = time.Now()
		p.mu.Unlock()
	}
}

// arrived notes the stream's event about id, when it is a ping.
func (p *pings) arrival(id string) {
	at := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if strings.HasPrefix(id, "00000000-0000-4000-8000-") {
		p.arrived[id] = at
	}
}

// latencies are the pings' times from sent to arrived; one that arrived
// before its statement returned counts as at once.
func (p *pings) latencies() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []time.Duration
	for id, sent := range p.sent {
		if at, ok := p.arrived[id]; ok {
			out = append(out, max(at.Sub(sent), 0))
		}
	}
	return out
}

// inboxRows returns the request ids of the inbox's first page of rows.
func inboxRows(ctx context.Context, c *client.Client) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+"/inbox/rows", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("HX-Request", "true")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /inbox/rows: %d", resp.StatusCode)
	}
	doc, err := goquery.NewDocumentFromReader(resp.Body)
	if err != nil {
		return nil, err
	}
	var ids []string
	doc.Find(`[data-testid=inbox-row]`).Each(func(_ int, s *goquery.Selection) {
		if id, ok := s.Attr("data-id"); ok {
			ids = append(ids, id)
		}
	})
	return ids, nil
}

// decide approves a request through the API once its agent is long-polling.
func decide(ctx context.Context, hc *http.Client, base, token string, fs *flows, requestID string) error {
	fl := fs.get(requestID)
	select {
	case <-fl.polling:
	case <-ctx.Done():
		return ctx.Err()
	}
	// The agent sends its long poll right after closing polling; give the
	// server a moment to be waiting in it, as a person's reading time would.
	time.Sleep(5 * time.Millisecond)
	var r struct {
		PayloadHash string `json:"payload_hash"`
	}
	if err := apiCall(ctx, hc, http.MethodGet, base+"/api/v1/requests/"+requestID, token, nil, &r); err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]string{"verdict": "approve", "payload_hash": r.PayloadHash})
	if err := apiCall(ctx, hc, http.MethodPost, base+"/api/v1/requests/"+requestID+"/decision", token, body, nil); err != nil {
		return err
	}
	decided := time.Now()
	fs.mu.Lock()
	fl.decided = decided
	fs.mu.Unlock()
	return nil
}

// apiCall sends a JSON API request with a bearer token and decodes a 200's
// body into out (when not nil).
func apiCall(ctx context.Context, hc *http.Client, method, url, token string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %.200s", method, url, resp.StatusCode, raw)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}

// receiver is the agents' callback endpoint on loopback: it records when
// each approval's first delivery arrives and answers 204.
type receiver struct {
	url  string
	srv  *http.Server
	mu   sync.Mutex
	seen map[string]time.Time
}

func newReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{url: "http://" + ln.Addr().String() + "/hook", seen: map[string]time.Time{}}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	var body struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(io.LimitReader(req.Body, 1<<20)).Decode(&body); err != nil || body.ID == "" {
		http.Error(w, "not an approval", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	if _, ok := r.seen[body.ID]; !ok {
		r.seen[body.ID] = at
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

func (r *receiver) at(id string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[id]
}

func (r *receiver) close() { _ = r.srv.Close() }

// loadavg is the first three fields of /proc/loadavg, or "unknown".
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
