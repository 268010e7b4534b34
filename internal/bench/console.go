package bench

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/client"
	"github.com/countersign/countersign/internal/store"
)

// ConsoleOptions size the console benchmark.
type ConsoleOptions struct {
	Runs      int // runs in the database
	Waiting   int // of which waiting for a human, each with a pending request
	Reviewers int // concurrent reviewers deciding
	Decisions int // decisions they make in all
	Samples   int // inbox page loads per measurement
	DeepRow   int // the deep page starts after this many rows
	// Reuse keeps a database that an earlier run loaded at these sizes
	// (the caller keeps it rather than making it anew): loading a million
	// runs takes minutes, and measuring a change to the inbox's queries
	// needs only the migrations run since. The decisions of earlier runs
	// have decided some requests, a few hundred of the waiting.
	Reuse bool
}

// ConsoleReport holds the results.
type ConsoleReport struct {
	Options                        ConsoleOptions
	LoadTime                       time.Duration
	InboxFirstP50, InboxFirstP95   time.Duration
	InboxDeepP50, InboxDeepP95     time.Duration
	InboxFilterP50, InboxFilterP95 time.Duration
	// The inbox's per-reviewer filters: "I can decide" and "Claimed by me".
	InboxCanP50, InboxCanP95         time.Duration
	InboxClaimedP50, InboxClaimedP95 time.Duration
	// Filters is every combination of the inbox's filters, first page.
	Filters                  []FilterTiming
	DecisionP50, DecisionP99 time.Duration
	DecisionsPerS            float64
	PacedP50, PacedP99       time.Duration
	PacedPerS                float64
}

// FilterTiming is the first inbox page under one combination of filters,
// and the unfiltered first page timed alternately with it: the machine's
// load drifts over the minutes the 67 combinations take, so each is compared
// with a baseline taken at the same moments.
type FilterTiming struct {
	Query            string // the inbox's query string, "" for no filter
	P50, P95         time.Duration
	BaseP50, BaseP95 time.Duration // the unfiltered page, alternating with this one
}

// inboxFilters are the values the console suite gives each of the inbox's
// filters. The rule is rare (vipRule, a few percent of the requests, all in
// one workflow other than the filtered one), so that the combinations include
// sparse and empty results; the age keeps about one request in seven.
var inboxFilters = []struct{ key, value string }{
	{"tier", "batched"}, {"workflow", "lead_enrichment"}, {"rule", vipRule}, {"age", "24h"}, {"can", "1"}, {"claimed", "me"},
}

// vipRule is the rare rule of the loaded requests.
const vipRule = "vip-refund"

// FilterQueries are the query strings the console suite times: every
// combination of the inbox's filters (each on or off, 64 in all, in the
// inbox's canonical order), then a few more values: the other tier, the rare
// rule within its own workflow, and a page after the first with a filter.
func FilterQueries() []string {
	var out []string
	for mask := range 1 << len(inboxFilters) {
		var parts []string
		for i, f := range inboxFilters {
			if mask&(1<<i) != 0 {
				parts = append(parts, f.key+"="+f.value)
			}
		}
		out = append(out, strings.Join(parts, "&"))
	}
	return append(out, "tier=explicit", "workflow=support_triage&rule="+vipRule, "tier=explicit&workflow=support_triage&can=1")
}

// ClaimedRequests is how many requests the first reviewer claims before the
// inbox is measured.
const ClaimedRequests = 20

// Paced is how often each reviewer decides in the paced measurement: far
// quicker than people read a request, slower than a loop without pause.
const Paced = 200 * time.Millisecond

const benchPassword = "bench-password-1"

// Console loads a large database and measures the inbox and decision POSTs
// through the real HTTP server.
func Console(ctx context.Context, pool *pgxpool.Pool, dbURL string, o ConsoleOptions, progress io.Writer) (*ConsoleReport, error) {
	rep := &ConsoleReport{Options: o}
	fmt.Fprintf(progress, "console: loading %d runs and %d waiting requests ...\n", o.Runs, o.Waiting)
	start := time.Now()
	loaded, err := loadedBefore(ctx, pool, o)
	if err != nil {
		return nil, err
	}
	if loaded {
		fmt.Fprintln(progress, "console: reusing the database loaded before")
	} else if err := load(ctx, pool, o); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	rep.LoadTime = time.Since(start)
	for i := range o.Reviewers {
		_, err := account.Create(ctx, pool, fmt.Sprintf("reviewer%d@bench.example", i), "Reviewer", "reviewer", benchPassword, "bench")
		if err != nil && !(loaded && errors.Is(err, account.ErrExists)) {
			return nil, err
		}
	}

	_, base, stop, err := startApp(ctx, pool, dbURL, 1, app.Options{Web: true, Demo: true})
	if err != nil {
		return nil, err
	}
	defer stop()

	clients := make([]*client.Client, o.Reviewers)
	for i := range clients {
		if clients[i], err = client.SignIn(base, fmt.Sprintf("reviewer%d@bench.example", i), benchPassword); err != nil {
			return nil, err
		}
	}

	// The first reviewer claims a screenful, spread over the inbox's order,
	// for "Claimed by me".
	some, err := pendingRequests(ctx, pool, o.Waiting)
	if err != nil {
		return nil, err
	}
	step := max(1, len(some)/ClaimedRequests)
	for i, n := 0, 0; i < len(some) && n < ClaimedRequests; i, n = i+step, n+1 {
		if _, err := store.ClaimSet(ctx, pool, some[i].id, "reviewer0@bench.example", time.Now()); err != nil {
			return nil, err
		}
	}

	fmt.Fprintln(progress, "console: inbox pages ...")
	deep, err := deepCursor(ctx, pool, o.DeepRow)
	if err != nil {
		return nil, err
	}
	for _, m := range []struct {
		path     string
		p50, p95 *time.Duration
	}{
		{"/", &rep.InboxFirstP50, &rep.InboxFirstP95},
		{"/?after=" + deep, &rep.InboxDeepP50, &rep.InboxDeepP95},
		{"/?workflow=lead_enrichment&tier=batched", &rep.InboxFilterP50, &rep.InboxFilterP95},
		{"/?can=1", &rep.InboxCanP50, &rep.InboxCanP95},
		{"/?claimed=me", &rep.InboxClaimedP50, &rep.InboxClaimedP95},
	} {
		lat, err := timeGets(clients[0], base+m.path, o.Samples)
		if err != nil {
			return nil, err
		}
		*m.p50, *m.p95 = percentile(lat, 50), percentile(lat, 95)
	}
	queries := FilterQueries()
	fmt.Fprintf(progress, "console: inbox under %d combinations of filters ...\n", len(queries))
	for _, q := range queries {
		var lat, baseLat []time.Duration
		for range max(1, o.Samples/2) {
			for _, m := range []struct {
				url string
				lat *[]time.Duration
			}{{base + "/", &baseLat}, {base + "/?" + q, &lat}} {
				one, err := timeGets(clients[0], m.url, 1)
				if err != nil {
					return nil, err
				}
				*m.lat = append(*m.lat, one...)
			}
		}
		rep.Filters = append(rep.Filters, FilterTiming{Query: q, P50: percentile(lat, 50), P95: percentile(lat, 95),
			BaseP50: percentile(baseLat, 50), BaseP95: percentile(baseLat, 95)})
	}

	fmt.Fprintf(progress, "console: %d decisions by %d reviewers without pause ...\n", o.Decisions, o.Reviewers)
	jobs, err := pendingRequests(ctx, pool, 2*o.Decisions)
	if err != nil {
		return nil, err
	}
	if len(jobs) < 2*o.Decisions {
		return nil, fmt.Errorf("only %d pending requests for %d decisions", len(jobs), 2*o.Decisions)
	}
	var lat []time.Duration
	if lat, rep.DecisionsPerS, err = decideAll(clients, jobs[:o.Decisions], 0); err != nil {
		return nil, err
	}
	rep.DecisionP50, rep.DecisionP99 = percentile(lat, 50), percentile(lat, 99)
	fmt.Fprintf(progress, "console: %d decisions by %d reviewers, one every %s each ...\n", o.Decisions, o.Reviewers, Paced)
	if lat, rep.PacedPerS, err = decideAll(clients, jobs[o.Decisions:], Paced); err != nil {
		return nil, err
	}
	rep.PacedP50, rep.PacedP99 = percentile(lat, 50), percentile(lat, 99)
	return rep, nil
}

// timeGets GETs url n times in a row as c and returns each latency.
func timeGets(c *client.Client, url string, n int) ([]time.Duration, error) {
	lat := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		resp, err := c.HTTP.Get(url)
		if err != nil {
			return nil, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %d", url, resp.StatusCode)
		}
		lat = append(lat, time.Since(t0))
	}
	return lat, nil
}

type pending struct{ id, hash string }

// pendingRequests returns n pending requests that every reviewer may decide:
// no rule's roles, not escalated, not started by a reviewer.

func pendingRequests(ctx context.Context, pool *pgxpool.Pool, n int) ([]pending, error) {
	rows, err := pool.Query(ctx, `SELECT id, payload_hash FROM approval_requests
		WHERE status = 'pending' AND roles = '{}' AND escalated_at IS NULL AND started_by = 'starter@bench.example' LIMIT $1`, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []pending
	for rows.Next() {
		var p pending
		if err := rows.Scan(&p.id, &p.hash); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// decideAll has every reviewer approve requests from the list until it is
// done, each waiting pace between decisions, and returns the latencies and
// the rate achieved.
func decideAll(clients []*client.Client, jobs []pending, pace time.Duration) ([]time.Duration, float64, error) {
	work := make(chan pending)
	var mu sync.Mutex
	var lat []time.Duration
	var failures int
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := time.Now().Add(time.Duration(i) * pace / time.Duration(len(clients)))
			for j := range work {
				time.Sleep(time.Until(next))
				next = time.Now().Add(pace)
				s := time.Now()
				status, err := clients[i].Decide(j.id, "approve", j.hash, nil)
				d := time.Since(s)
				mu.Lock()
				if err != nil || status != http.StatusSeeOther {
					failures++
				} else {
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		}()
	}
	for _, j := range jobs {
		work <- j
	}
	close(work)
	wg.Wait()
	if failures > 0 {
		return nil, 0, fmt.Errorf("%d decisions failed", failures)
	}
	return lat, float64(len(lat)) / time.Since(t0).Seconds(), nil
}

// loadedBefore reports whether o asks to reuse a database that an earlier
// run loaded at o's sizes. A database loaded at other sizes is refused
// rather than measured as if it were the one asked for.
func loadedBefore(ctx context.Context, pool *pgxpool.Pool, o ConsoleOptions) (bool, error) {
	if !o.Reuse {
		return false, nil
	}
	var runs, requests int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM workflow_runs), (SELECT count(*) FROM approval_requests)`).Scan(&runs, &requests); err != nil {
		return false, err
	}
	switch {
	case runs == 0:
		return false, nil
	case runs != o.Runs || requests != o.Waiting:
		return false, fmt.Errorf("the console's database holds %d runs and %d requests, not %d and %d: run once without --console-reuse", runs, requests, o.Runs, o.Waiting)
	}
	// Migrations run since the load may have added columns or indexes:
	// statistics and the visibility map as a fresh load leaves them.
	_, err := pool.Exec(ctx, `VACUUM ANALYZE approval_requests`)
	return true, err
}

// load fills the database with runs and pending requests in a few statements.
func load(ctx context.Context, pool *pgxpool.Pool, o ConsoleOptions) error {
	for _, q := range []string{
		fmt.Sprintf(`INSERT INTO workflow_runs (workflow, business_key, status, input, current_step, started_by, created_at)
			SELECT (ARRAY['support_triage','lead_enrichment','content_review'])[1 + g %% 3], 'bench-' || g,
				CASE WHEN g <= %d THEN 'waiting_human' ELSE 'completed' END, '{"n": 1}', 'request_approval', 'starter@bench.example',
				now() - make_interval(secs => g)
			FROM generate_series(1, %d) g`, o.Waiting, o.Runs),
		`INSERT INTO approval_requests (run_id, step_seq, workflow, tier, status, action_kind, summary, action, payload_hash,
				policy_version, rule, reason, roles, escalated_at, deadline, started_by, created_at)
			SELECT id, 3, workflow, CASE WHEN hashtext(id::text) % 10 < 3 THEN 'batched' ELSE 'explicit' END, 'pending',
				'crm.update', 'Update 2 CRM fields of ' || business_key,
				jsonb_build_object('kind', 'crm.update', 'summary', 'Update 2 CRM fields of ' || business_key,
					'params', jsonb_build_object('fields', jsonb_build_object('industry', 'Retail', 'website', 'https://example.com'))),
				md5(id::text), 0,
				CASE WHEN workflow = 'support_triage' AND hashtext(business_key) % 10 = 0 THEN 'vip-refund' -- vipRule
					WHEN hashtext(business_key) % 2 = 0 THEN 'crm-updates' ELSE 'default-explicit' END, 'bench',
				CASE WHEN hashtext(business_key) % 10 = 1 THEN '{approver}'::text[] ELSE '{}' END,
				CASE WHEN hashtext(business_key) % 200 = 3 THEN now() END,
				CASE WHEN hashtext(id::text) % 2 = 0 THEN now() + make_interval(hours => abs(hashtext(business_key)) % 48) END,
				CASE WHEN hashtext(business_key) % 20 = 2 THEN 'reviewer0@bench.example' ELSE started_by END, created_at
			FROM workflow_runs WHERE status = 'waiting_human'`,
		`ANALYZE workflow_runs`,
		// Vacuumed as autovacuum leaves rows that have waited a while
		// (the visibility map set), so that counts may read only an index.
		`VACUUM ANALYZE approval_requests`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// deepCursor returns the inbox cursor after row n, as the next-page link would.
func deepCursor(ctx context.Context, pool *pgxpool.Pool, n int) (string, error) {
	rows, err := store.RequestListInbox(ctx, pool, store.InboxParams{Limit: 1, Now: time.Now()})
	if err != nil || len(rows) == 0 {
		return "", fmt.Errorf("inbox is empty: %w", err)
	}
	var c store.InboxCursor
	err = pool.QueryRow(ctx, `SELECT (CASE WHEN escalated_at IS NOT NULL THEN 0 WHEN tier = 'explicit' THEN 1 ELSE 2 END), coalesce(deadline, 'infinity'::timestamptz), created_at, id
		FROM approval_requests WHERE status = 'pending'
		ORDER BY (CASE WHEN escalated_at IS NOT NULL THEN 0 WHEN tier = 'explicit' THEN 1 ELSE 2 END), coalesce(deadline, 'infinity'::timestamptz), created_at, id
		OFFSET $1 LIMIT 1`, n).Scan(&c.Rank, &c.Deadline, &c.CreatedAt, &c.ID)
	if err != nil {
		return "", err
	}
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, len(s)*p/100)]
}
