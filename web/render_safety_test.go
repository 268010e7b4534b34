package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/PuerkitoBio/goquery"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// spoofInput is what the spoof workflow proposes, and the message it fails
// with once the proposal is decided.
type spoofInput struct {
	Action workflow.Action `json:"action"`
	Fail   string          `json:"fail"`
}

// spoofing registers a workflow whose model output tries to make the
// reviewer read something other than what runs.
func spoofing(r *workflow.Registry, _ *ai.Offline) {
	workflow.Register(r, "spoof", func(ctx context.Context, in spoofInput) (string, error) {
		d, err := workflow.RequestApproval(ctx, in.Action)
		if err != nil {
			return "", err
		}
		return "", workflow.Fail("spoof", in.Fail+" "+string(d.Verdict))
	})
}

// Characters issue 9 names: a page must never hold one of them raw.
func hiddenRune(r rune) bool {
	return (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) || (r >= 0x200B && r <= 0x200F) || r == 0xFEFF
}

// requireSafe checks a whole page: no listed character in any text or
// attribute, and no class name a model chose.
func requireSafe(t *testing.T, page string, doc *goquery.Document) {
	t.Helper()
	text := doc.Text()
	if i := strings.IndexFunc(text, hiddenRune); i >= 0 {
		t.Fatalf("%s shows a hidden character raw in %q", page, clipped(text[max(0, i-40):]))
	}
	doc.Find("*").Each(func(_ int, s *goquery.Selection) {
		for _, a := range s.Nodes[0].Attr {
			require.False(t, strings.IndexFunc(a.Val, hiddenRune) >= 0, "%s has a hidden character in %s=%q", page, a.Key, clipped(a.Val))
			if a.Key == "class" {
				require.NotContains(t, strings.Fields(a.Val), "x-injected", "%s: a model value became a class", page)
			}
		}
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func clipped(s string) string {
	if utf8.RuneCountInString(s) > 80 {
		return string([]rune(s)[:80]) + "…"
	}
	return s
}

// requireMarked checks that sel shows the character code as a marked token.
func requireMarked(t *testing.T, sel *goquery.Selection, title, what string) {
	t.Helper()
	require.NotZero(t, sel.Length(), "%s is on the page", what)
	mark := sel.Find(`span.invisible[title="` + title + `"]`)
	require.NotZero(t, mark.Length(), "%s marks %s", what, title)
	require.Equal(t, "⟨"+strings.Fields(title)[0]+"⟩", mark.First().Text())
}

// fields returns the parameter table's rows, by field, with the proposed value.
func fields(t *testing.T, rows *goquery.Selection) map[string]string {
	t.Helper()
	out := map[string]string{}
	rows.Each(func(_ int, row *goquery.Selection) {
		f := row.Find(`[data-testid=field]`).Text()
		_, dup := out[f]
		require.False(t, dup, "two rows read %q", f)
		out[f] = strings.TrimSpace(row.Find(`.to`).Text())
	})
	return out
}

const (
	rlo  = "RIGHT-TO-LEFT OVERRIDE"
	lri  = "LEFT-TO-RIGHT ISOLATE"
	zwsp = "ZERO WIDTH SPACE"
)

func TestRenderSafety(t *testing.T) {
	t.Parallel()
	c := startConsole(t, spoofing)
	reviewer := c.client(t, "reviewer@example.com")

	long := strings.Repeat("Because the invoice is due. ", 8000)[:200_000]
	proposal := func(kind string) workflow.Action {
		return workflow.Action{
			Kind:       kind,
			Target:     "customer:\u2066mallory@example.com\u2069",
			Summary:    "Pay the invoice \u202Efdp.exe",
			Risk:       "high x-injected",
			Reversible: true,
			Rationale:  long + "\u202E",
			Params: map[string]any{
				"payee":      map[string]any{"iban": "DE-NESTED-RUNS"},
				"payee.iban": "DE-LITERAL-HARMLESS",
				"memo\u200B": "thanks\uFEFF",
				"letter":     strings.Repeat("x", 3000),
			},
			Current: map[string]any{"payee": map[string]any{"iban": "DE-OLD"}},
			Checks:  []workflow.Check{{Name: "iban \u202Eko", Passed: true, Detail: "\u200Fchecked"}},
		}
	}
	run, req := c.startRun(t, "spoof", "s-1", spoofInput{Action: proposal("email.send"), Fail: "refused \u202Etxt"}, "api@example.com")
	require.Equal(t, vocab.TierExplicit, req.Tier)
	_, item := c.startRun(t, "spoof", "s-2", spoofInput{Action: proposal("ticket.update"), Fail: "x"}, "api@example.com")
	require.Equal(t, vocab.TierBatched, item.Tier)
	require.NotNil(t, item.BatchID)

	t.Run("Review", func(t *testing.T) {
		page := "/requests/" + req.ID
		doc, status := c.get(t, reviewer, page)
		require.Equal(t, http.StatusOK, status)

		// Two parameters, two rows: the nested one that runs, the dotted one
		// that once hid it.
		got := fields(t, doc.Find(`[data-testid=params] tbody tr`))
		require.Equal(t, "DE-NESTED-RUNS", got["/payee/iban"])
		require.Equal(t, "DE-LITERAL-HARMLESS", got["/payee.iban"])
		require.Contains(t, got, "/memo⟨U+200B⟩")
		requireMarked(t, doc.Find(`[data-testid=params] tbody tr`).FilterFunction(func(_ int, s *goquery.Selection) bool {
			return strings.HasPrefix(s.Find(`[data-testid=field]`).Text(), "/memo")
		}).Find(`[data-testid=field]`), "U+200B "+zwsp, "the parameter key")
		requireMarked(t, doc.Find(`[data-testid=params] .to`), "U+FEFF ZERO WIDTH NO-BREAK SPACE", "a parameter value")

		requireMarked(t, doc.Find(`[data-testid=summary]`), "U+202E "+rlo, "the summary")
		requireMarked(t, doc.Find(`[data-testid=target]`), "U+2066 "+lri, "the target")
		requireMarked(t, doc.Find(`[data-testid=target]`), "U+2069 POP DIRECTIONAL ISOLATE", "the target")
		requireMarked(t, doc.Find(`[data-testid=checks]`), "U+202E "+rlo, "a check's name")
		requireMarked(t, doc.Find(`[data-testid=checks]`), "U+200F RIGHT-TO-LEFT MARK", "a check's detail")
		requireMarked(t, doc.Find(`[data-testid=rationale]`), "U+202E "+rlo, "the rationale")
		// The edit form names each field as the table does, and a value
		// holding an invisible character is edited as JSON that spells it out.
		memo := doc.Find(`[data-testid=edit-field]`).FilterFunction(func(_ int, s *goquery.Selection) bool {
			return strings.HasPrefix(s.AttrOr("data-pointer", ""), "/memo")
		})
		require.Equal(t, 1, memo.Length())
		requireMarked(t, memo.Find(`code`), "U+200B "+zwsp, "the edit field's name")
		require.Equal(t, `"thanks\ufeff"`, memo.Find(`textarea`).Text(), "the edit box spells the value out")

		// The 200k-character rationale is collapsed behind its length.
		rationale := doc.Find(`[data-testid=rationale] details.long`)
		require.Equal(t, 1, rationale.Length())
		_, open := rationale.Attr("open")
		require.False(t, open)
		require.Equal(t, "200001 characters", rationale.Find(`summary [data-testid=length]`).Text())
		require.Less(t, utf8.RuneCountInString(rationale.Find(`summary`).Text()), 400, "the summary shows the first few hundred characters")
		// So is the diff of a 3000-character parameter.
		require.Equal(t, 1, doc.Find(`[data-testid=params] details.long [data-testid=diff]`).Length())

		// The model's risk is shown, escaped, but is no class.
		risk := doc.Find(`[data-testid=risk]`)
		require.Equal(t, "risk: high x-injected", strings.Join(strings.Fields(risk.Text()), " "))
		require.Equal(t, "badge risk-unknown", risk.AttrOr("class", ""))
		requireSafe(t, page, doc)
	})

	t.Run("Inbox", func(t *testing.T) {
		doc, status := c.get(t, reviewer, "/")
		require.Equal(t, http.StatusOK, status)
		requireSafe(t, "/", doc)
		row := doc.Find(`[data-testid=inbox-row][data-id="` + req.ID + `"] [data-testid=row-link]`)
		requireMarked(t, row, "U+202E "+rlo, "the inbox summary")
		require.Equal(t, "Pay the invoice ⟨U+202E⟩fdp.exe", strings.TrimSpace(row.Text()))
	})

	t.Run("Batch", func(t *testing.T) {
		page := "/batches/" + *item.BatchID
		doc, status := c.get(t, reviewer, page)
		require.Equal(t, http.StatusOK, status)
		requireSafe(t, page, doc)
		it := doc.Find(`[data-testid=batch-item][data-id="` + item.ID + `"]`)
		requireMarked(t, it.Find(`[data-testid=item-summary]`), "U+202E "+rlo, "the item's summary")
		requireMarked(t, it.Find(`[data-testid=item-target]`), "U+2066 "+lri, "the item's target")
		requireMarked(t, it.Find(`[data-testid=item-rationale]`), "U+202E "+rlo, "the item's rationale")
		requireMarked(t, it.Find(`[data-testid=item-params]`), "U+200B "+zwsp, "the item's parameters")
		requireMarked(t, it.Find(`[data-testid=key-params]`), "U+200B "+zwsp, "the item's key parameters")
		require.Equal(t, "200001 characters", it.Find(`[data-testid=item-rationale] details.long summary [data-testid=length]`).Text())
		changed := map[string]string{}
		it.Find(`[data-testid=item-change]`).Each(func(_ int, s *goquery.Selection) {
			changed[s.Find(`[data-testid=field]`).Text()] = strings.TrimSpace(s.Find(`.to`).Text())
		})
		require.Equal(t, "DE-NESTED-RUNS", changed["/payee/iban"])
		require.Equal(t, "DE-LITERAL-HARMLESS", changed["/payee.iban"])
	})

	// Decided, the run fails with a message of the model's; the run page and
	// the history show that and the request.
	resp, _ := c.post(t, reviewer, "/requests/"+req.ID, "/requests/"+req.ID+"/decision", url.Values{"verdict": {"approve"}, "payload_hash": {req.PayloadHash}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	c.WaitRun(t, run.ID, vocab.RunFailed)

	t.Run("Run", func(t *testing.T) {
		page := "/runs/" + run.ID
		doc, status := c.get(t, reviewer, page)
		require.Equal(t, http.StatusOK, status)
		requireSafe(t, page, doc)
		requireMarked(t, doc.Find(`[data-testid=run-error]`), "U+202E "+rlo, "the run's error")
		steps := doc.Find(`[data-testid=timeline] [data-testid=step]`).Length()
		require.Positive(t, steps)
		require.Equal(t, fmt.Sprintf("%d steps", steps), doc.Find(`[data-testid=run-steps]`).Text(),
			"a failed run's header counts the steps it shows, its failed one included")
		requireMarked(t, doc.Find(`[data-testid=run-input]`), "U+2066 "+lri, "the run's input")
		require.Equal(t, 1, doc.Find(`[data-testid=run-input] details.long`).Length(), "the 200k input is collapsed")
		requireMarked(t, doc.Find(`[data-testid=run-request]`), "U+202E "+rlo, "the run's request")
		requireMarked(t, doc.Find(`[data-testid=run-history] [data-testid=details]`), "U+202E "+rlo, "the run's history")

		doc, _ = c.get(t, reviewer, "/runs")
		requireSafe(t, "/runs", doc)
	})

	t.Run("History", func(t *testing.T) {
		doc, status := c.get(t, reviewer, "/history")
		require.Equal(t, http.StatusOK, status)
		requireSafe(t, "/history", doc)
		requireMarked(t, doc.Find(`[data-testid=history] [data-testid=details]`), "U+202E "+rlo, "a history row")
	})

	t.Run("Auto", func(t *testing.T) {
		a := proposal("crm.lookup")
		started, _, err := c.Engine.Start(t.Context(), workflow.StartParams{Workflow: "spoof", BusinessKey: "s-3",
			Input: mustJSON(t, spoofInput{Action: a, Fail: "x"}), StartedBy: "api@example.com"})
		require.NoError(t, err)
		c.WaitRun(t, started.ID, vocab.RunFailed)
		doc, status := c.get(t, reviewer, "/auto")
		require.Equal(t, http.StatusOK, status)
		requireSafe(t, "/auto", doc)
		requireMarked(t, doc.Find(`[data-testid=auto-row]`), "U+202E "+rlo, "an automatic approval")
	})
}
