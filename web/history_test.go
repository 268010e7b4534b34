package web_test

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// decidedHistory starts runs and decides them several ways, so that the
// history has something to filter.
func decidedHistory(t *testing.T, c *console) []string {
	t.Helper()
	ctx := context.Background()
	var runIDs []string
	for i := range 6 {
		run, req := c.startRun(t, "support_triage", fmt.Sprintf("H-%d", i), demo.Ticket{ID: fmt.Sprint(i), Customer: "a@example.com",
			Subject: "How do I login?", Body: "password"}, "api@example.com")
		runIDs = append(runIDs, run.ID)
		p := workflow.DecideParams{RequestID: req.ID, PayloadHash: req.PayloadHash, Verdict: vocab.VerdictApprove,
			Actor: workflow.Actor{Name: "reviewer@example.com", Roles: []vocab.Role{"reviewer"}}}
		if i%3 == 0 {
			p.Verdict, p.Reason = vocab.VerdictReject, "not now"
		}
		_, err := c.Engine.Decide(ctx, p)
		require.NoError(t, err)
	}
	// An automatic decision: an enriched lead is only looked up.
	c.startRunAny(t, "lead_enrichment", "H-auto", demo.Lead{ID: "L", Company: "Umbrella", Email: "x@umbrella.example", Employees: 4000, Industry: "Healthcare"})
	_, err := audit.Chain(ctx, c.Pool)
	require.NoError(t, err)
	return runIDs
}

func (c *console) startRunAny(t *testing.T, wf, key string, input any) {
	t.Helper()
	raw, _ := json.Marshal(input)
	run, _, err := c.Engine.Start(context.Background(), workflow.StartParams{Workflow: wf, BusinessKey: key, Input: raw, StartedBy: "api@example.com"})
	require.NoError(t, err)
	c.WaitRun(t, run.ID, "completed")
}

func TestHistory(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	runIDs := decidedHistory(t, c)
	hc := c.client(t, "viewer@example.com")

	doc, status := c.get(t, hc, "/history?kind=decision.recorded")
	require.Equal(t, 200, status)
	require.Equal(t, 6, doc.Find(`[data-testid=event]`).Length())
	require.Equal(t, "6", doc.Find(`[data-testid=summary-decisions]`).Text(), "the summary covers the filtered events")
	require.Equal(t, "2", doc.Find(`[data-testid=summary-reject]`).Text())

	doc, _ = c.get(t, hc, "/history")
	require.Equal(t, "7", doc.Find(`[data-testid=summary-decisions]`).Text(), "six human decisions and one automatic")
	require.Equal(t, "14%", doc.Find(`[data-testid=summary-auto]`).Text())

	doc, _ = c.get(t, hc, "/history?verdict=reject")
	require.Equal(t, 2, doc.Find(`[data-testid=event]`).Length())
	doc, _ = c.get(t, hc, "/history?tier=auto&workflow=lead_enrichment")
	require.Equal(t, 1, doc.Find(`[data-testid=event]`).Length(), "the automatic decision")
	doc, _ = c.get(t, hc, "/history?actor=reviewer@example.com&since="+time.Now().Format("2006-01-02"))
	require.Equal(t, 6, doc.Find(`[data-testid=event]`).Length())
	doc, _ = c.get(t, hc, "/history?until=2000-01-01")
	require.Zero(t, doc.Find(`[data-testid=event]`).Length())
	for _, bad := range []string{"/history?verdict=maybe", "/history?run=x", "/history?since=yesterday", "/history?before=-1",
		"/history?kind=bogus", "/history/export?kind=decision.bogus", "/history/export?format=xml"} {
		_, status := c.get(t, hc, bad)
		require.Equal(t, http.StatusBadRequest, status, bad)
	}

	t.Run("FilterMenuListsEveryKind", func(t *testing.T) {
		doc, _ := c.get(t, hc, "/history")
		var menu []string
		doc.Find(`select[name=kind] option`).Each(func(_ int, s *goquery.Selection) {
			if v, _ := s.Attr("value"); v != "" {
				menu = append(menu, v)
			}
		})
		var kinds []string
		for _, k := range audit.Kinds {
			kinds = append(kinds, string(k))
		}
		require.Equal(t, kinds, menu)
		for _, k := range []string{"batch.decided", "request.escalated"} {
			require.Contains(t, menu, k, "missing from the menu before the kinds were typed")
		}
		rows, err := c.Pool.Query(context.Background(), `SELECT DISTINCT kind FROM audit_events`)
		require.NoError(t, err)
		emitted, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		require.NotEmpty(t, emitted)
		require.Subset(t, menu, emitted, "every kind in the log can be filtered on")
	})

	t.Run("RunPageShowsItsHistoryInOrder", func(t *testing.T) {
		doc, _ := c.get(t, hc, "/runs/"+runIDs[1])
		var kinds []string
		doc.Find(`[data-testid=run-history] [data-testid=event] code`).Each(func(_ int, s *goquery.Selection) { kinds = append(kinds, s.Text()) })
		require.Equal(t, []string{"run.started", "approval.requested", "decision.recorded"}, kinds)
	})

	t.Run("ExportMatchesTheView", func(t *testing.T) {
		for _, q := range []string{"", "verdict=approve", "kind=approval.requested&workflow=support_triage", "run=" + runIDs[0]} {
			var viewIDs []string
			doc, _ := c.get(t, hc, "/history?"+q)
			doc.Find(`[data-testid=event]`).Each(func(_ int, s *goquery.Selection) {
				id, _ := s.Attr("data-id")
				viewIDs = append(viewIDs, id)
			})
			require.NotEmpty(t, viewIDs, q)

			// The page's own link: the export of exactly this view.
			link, _ := doc.Find(`[data-testid=export-csv]`).Attr("href")
			require.Contains(t, link, "format=csv")
			resp, err := hc.Get(c.Addr + link)
			require.NoError(t, err)
			require.Equal(t, "text/csv; charset=utf-8", resp.Header.Get("Content-Type"))
			require.Contains(t, resp.Header.Get("Content-Disposition"), "attachment")
			records, err := csv.NewReader(resp.Body).ReadAll()
			resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, audit.CSVHeader, records[0])
			var csvIDs []string
			for _, r := range records[1:] {
				csvIDs = append(csvIDs, r[0])
			}
			require.Equal(t, viewIDs, csvIDs, "CSV row for row: %s", q)

			link, _ = doc.Find(`[data-testid=export-jsonl]`).Attr("href")
			resp, err = hc.Get(c.Addr + link)
			require.NoError(t, err)
			var jsonIDs []string
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				var l audit.Line
				require.NoError(t, json.Unmarshal(sc.Bytes(), &l))
				require.Empty(t, l.Hash+l.PrevHash, "a viewer's export carries no hashes (TestFailedSignInsAreForAdmins)")
				jsonIDs = append(jsonIDs, strconv.FormatInt(l.ID, 10))
			}
			resp.Body.Close()
			require.Equal(t, viewIDs, jsonIDs, "JSON Lines row for row: %s", q)
		}
	})

	t.Run("API", func(t *testing.T) {
		api := c.api(t, "viewer@example.com")
		var page struct {
			Events []audit.Line `json:"events"`
			Next   string       `json:"next"`
		}
		require.Equal(t, 200, api.do("GET", "/audit?kind=decision.recorded&limit=4", nil, &page))
		require.Len(t, page.Events, 4)
		require.NotEmpty(t, page.Next)
		first := page.Events
		require.Equal(t, 200, api.do("GET", "/audit?kind=decision.recorded&limit=4&before="+page.Next, nil, &page))
		require.Len(t, page.Events, 2)
		require.Greater(t, first[3].ID, page.Events[0].ID, "keyset pages, newest first")
		require.Equal(t, 400, api.do("GET", "/audit?kind=decision.recroded", nil, nil), "a misspelt kind is refused, not an empty page")
		req, _ := http.NewRequest("GET", c.Addr+"/api/v1/audit/export?format=jsonl&verdict=reject", nil)
		req.Header.Set("Authorization", "Bearer "+api.token)
		resp, err := contractClient(t).Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, 2, strings.Count(string(body), "\n"))
	})
}

func TestBrowserHistoryExport(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	decidedHistory(t, c)
	ctx := browser(t)
	dir := t.TempDir()
	c.signIn(ctx, t, "viewer@example.com")
	require.NoError(t, chromedp.Run(ctx,
		cdpbrowser.SetDownloadBehavior(cdpbrowser.SetDownloadBehaviorBehaviorAllow).WithDownloadPath(dir).WithEventsEnabled(true),
		clickOn(`[data-testid=nav-history]`),
		chromedp.WaitVisible(`[data-testid=history]`, chromedp.ByQuery),
		chromedp.SetValue(`[data-testid=filter-verdict]`, "reject", chromedp.ByQuery),
		clickOn(`[data-testid=history-filter]`),
	))
	waitLocation(ctx, t, "verdict=reject")
	var rows int
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`document.querySelectorAll("[data-testid=event]").length`, &rows)))
	require.Equal(t, 2, rows)
	screenshot(ctx, t, "history")
	for _, link := range []string{"export-csv", "export-jsonl"} {
		require.NoError(t, chromedp.Run(ctx, clickOn(`[data-testid=`+link+`]`)))
	}
	want := map[string]int{".csv": 3, ".jsonl": 2} // the CSV has a header line
	deadline := time.Now().Add(15 * time.Second)
	for len(want) > 0 && time.Now().Before(deadline) {
		files, _ := filepath.Glob(filepath.Join(dir, "countersign-audit-*"))
		for _, f := range files {
			ext := filepath.Ext(f)
			n, ok := want[ext]
			if !ok {
				continue
			}
			b, err := os.ReadFile(f)
			if err == nil && strings.Count(string(b), "\n") == n {
				require.Contains(t, string(b), "reject")
				delete(want, ext)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.Empty(t, want, "downloads missing")

}
