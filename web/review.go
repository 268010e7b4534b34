package web

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/templates"
	"github.com/countersign/countersign/vocab"
)

// reviewView loads everything the review page shows. head is the first page
// of the inbox, for the neighbours, when the caller has it already (a
// decision read it before deciding); nil reads it.
func (s *Server) reviewView(c echo.Context, id string, head []store.InboxRow) (templates.ReviewView, error) {
	ctx := c.Request().Context()
	var v templates.ReviewView
	req, err := store.RequestGet(ctx, s.Pool, id)
	if err != nil {
		return v, err
	}
	v.Request = req
	// Numbers stay as written ("842.00"): an amount keeps its decimals.
	dec := json.NewDecoder(bytes.NewReader(req.Action))
	dec.UseNumber()
	if err := dec.Decode(&v.Action); err != nil {
		return v, fmt.Errorf("decode action: %w", err)
	}
	v.Changes = templates.Changes(v.Action.Current, v.Action.Params)
	v.Confirm = v.Action.Risk == "high" || !v.Action.Reversible
	if v.Run, err = store.RunGet(ctx, s.Pool, req.RunID); err != nil {
		return v, err
	}
	if v.Steps, err = store.StepList(ctx, s.Pool, req.RunID); err != nil {
		return v, err
	}
	if v.Votes, err = store.VoteListTimed(ctx, s.Pool, req.ID); err != nil {
		return v, err
	}
	if v.Agent, err = s.agentView(c, v.Run); err != nil {
		return v, err
	}
	// A decision row is written in the transaction that takes the request
	// out of pending (approval.recordDecision), so a pending request has
	// none: not asked for, one query fewer on every page a reviewer decides.
	if req.Status != vocab.RequestPending {
		if err := s.decisionView(c, &v); err != nil {
			return v, err
		}
	}
	u := currentUser(c)
	for _, vt := range v.Votes {
		if vt.Actor == actorOf(u).Name {
			v.Voted = true
		}
	}
	switch {
	case !u.Role.CanDecide():
		v.WhyNot = "Viewers can read requests but not decide them."
	case !workflow.CanDecide(req, actorOf(u).Roles):
		v.WhyNot = "This request needs one of the roles " + vocab.Join(workflow.AllowedRoles(req), ", ") + "."
	default:
		v.CanDecide = true
	}
	if head == nil {
		if head, err = s.inboxHead(c); err != nil {
			return v, err
		}
	}
	v.Prev, v.Next = neighbours(head, req.ID)
	return v, nil
}

// decisionView adds a decided request's decision, when it has one, and
// after an edit what ran.
func (s *Server) decisionView(c echo.Context, v *templates.ReviewView) error {
	d, err := store.DecisionGetByRequest(c.Request().Context(), s.Pool, v.Request.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	v.Decision = d
	if d.Verdict == vocab.VerdictEdit {
		var edited map[string]any
		ed := json.NewDecoder(bytes.NewReader(d.EditedParams))
		ed.UseNumber()
		if err := ed.Decode(&edited); err != nil {
			return fmt.Errorf("decode edited parameters: %w", err)
		}
		v.Executed = templates.Changes(v.Action.Params, edited)
	}
	return nil
}

// neighbours finds the requests before and after id in the inbox's order
// (rows, its first page, unfiltered), for j and k and for going on after a
// decision. A request not on that page has the inbox's first as its next.
func neighbours(rows []store.InboxRow, id string) (prev, next string) {
	for i, r := range rows {
		if r.Request.ID != id {
			continue
		}
		if i > 0 {
			prev = rows[i-1].Request.ID
		}
		if i+1 < len(rows) {
			next = rows[i+1].Request.ID
		}
		return prev, next
	}
	if len(rows) > 0 {
		next = rows[0].Request.ID
	}
	return "", next
}

// inboxHead is the first page of the unfiltered inbox, in its order.
func (s *Server) inboxHead(c echo.Context) ([]store.InboxRow, error) {
	return store.RequestListInbox(c.Request().Context(), s.Pool, store.InboxParams{Limit: inboxPage, Now: s.Now()})
}

// nextToDecide is the request to go on to after deciding id: the first after
// it in the inbox's order (or the inbox's first, when id was not on its first
// page) that the actor may decide. Requests of runs they started and requests
// for other roles are passed over: landing on one would only stop the
// reviewer.
func nextToDecide(rows []store.InboxRow, id string, actor workflow.Actor) string {
	start := 0
	for i, r := range rows {
		if r.Request.ID == id {
			start = i + 1
		}
	}
	for _, r := range rows[start:] {
		if r.Request.ID != id && r.Request.StartedBy != actor.Name && workflow.CanDecide(r.Request, actor.Roles) {
			return r.Request.ID
		}
	}
	return ""
}

// handleReview handles the "GET /requests/:id" route. After a decision it
// shows the outcome as a toast (done, from); after a refused decision
// (refused) it shows the form again as it was sent, with the reason.
func (s *Server) handleReview(c echo.Context) error {
	t := startTiming(c)
	loadStart := time.Now()
	v, err := s.reviewView(c, c.Param("id"), nil)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if tok := c.QueryParam("refused"); tok != "" {
		if r, ok := s.refused.get(tok, actorOf(currentUser(c)).Name, v.Request.ID); ok {
			v.Form, status = r.form, r.status
		}
	}
	v.Fields = templates.EditFields(v.Action.Params, v.Form.Typed, v.Form.FieldErrors)
	if done := c.QueryParam("done"); flashes[done] != "" {
		var from *store.Request
		if id := c.QueryParam("from"); id != "" && id != v.Request.ID && store.IsID(id) {
			from, _ = store.RequestGet(c.Request().Context(), s.Pool, id)
		}
		v.Toast = toast(done, from, v.Request)
	}
	t.add("load", loadStart)
	return render(c, status, templates.Review(s.page(c, v.Request.Summary, "inbox"), v))
}

// toast is the outcome of the decision done on from (nil when unknown),
// shown on req's page.
func toast(done string, from, req *store.Request) *templates.Toast {
	t := &templates.Toast{Text: flashes[done]}
	if from != nil {
		t.FromID, t.FromSummary = from.ID, from.Summary
	}
	if t.FromID == "" && req.Status != vocab.RequestPending {
		t.Text += " Nothing else is waiting in the inbox."
	}
	return t
}

// handleReviewState handles the "GET /requests/:id/state" route: the review
// page asks it on every change of the request's run, and a decision taken
// elsewhere comes back as a notice that closes the page's form.
func (s *Server) handleReviewState(c echo.Context) error {
	req, err := store.RequestGet(c.Request().Context(), s.Pool, c.Param("id"))
	if err != nil {
		return err
	}
	if req.Status == vocab.RequestPending {
		return c.HTML(http.StatusOK, "")
	}
	return render(c, http.StatusOK, templates.DecidedElsewhere(req))
}

var flashes = map[string]string{
	string(vocab.VerdictApprove):        "Approved. The run has resumed.",
	string(vocab.VerdictEdit):           "Approved with your edits. The run has resumed.",
	string(vocab.VerdictReject):         "Rejected. The run has ended.",
	string(vocab.VerdictRequestChanges): "Changes requested. The run will propose again.",
	"vote":                              "Your approval is recorded; the rule needs more approvers.",
}

// handleDecide handles the "POST /requests/:id/decision" route. A decision
// goes on to the next request in the inbox's order, its outcome in a toast; a
// refused one redirects back to the form as it was sent, with the reason at
// its field, so that a reload does not send it again (post, redirect, get).
//
// The review page's form posts through htmx (HX-Request): then a decision
// answers with the next request's review at once, which the page swaps in
// and whose address it pushes, saving the redirect's second round trip and
// a whole page load; a refusal still sends the browser to the refused
// form's page (HX-Redirect). A plain form post gets the redirects.
func (s *Server) handleDecide(c echo.Context) error {
	t := startTiming(c)
	id := c.Param("id")
	u := currentUser(c)
	form := templates.DecisionForm{Verdict: vocab.Verdict(c.FormValue("verdict")), Reason: c.FormValue("reason"),
		Comment: c.FormValue("comment"), EditedParams: c.FormValue("edited_params")}
	p := workflow.DecideParams{RequestID: id, Actor: actorOf(u),
		Verdict: form.Verdict, Reason: form.Reason, Comment: form.Comment, PayloadHash: c.FormValue("payload_hash")}
	var err error
	if form.Verdict == vocab.VerdictEdit {
		p.EditedParams, err = s.editedParams(c, id, &form)
	}
	if err == nil && (form.Verdict == vocab.VerdictReject || form.Verdict == vocab.VerdictRequestChanges) && strings.TrimSpace(form.Reason) == "" {
		form.ErrorField = "reason"
	}
	// The neighbours are found before deciding: once decided, the request
	// leaves the inbox and with it its place in the order.
	inboxStart := time.Now()
	head, nerr := s.inboxHead(c)
	if nerr != nil {
		return nerr
	}
	t.add("inbox", inboxStart)
	next := nextToDecide(head, id, p.Actor)
	var res *workflow.DecideResult
	if err == nil {
		start := time.Now()
		res, err = s.Engine.Decide(c.Request().Context(), p)
		t.add("decide", start)
	}
	swap := c.Request().Header.Get("HX-Request") == "true"
	if err != nil {
		status, _, msg := httpError(err)
		if status >= 500 {
			return err
		}
		if _, err := store.RequestGet(c.Request().Context(), s.Pool, id); err != nil {
			return err // no page to go back to
		}
		if errors.Is(err, workflow.ErrPayloadChanged) {
			form = templates.DecisionForm{} // what they typed was about the old payload
		}
		if form.Error == "" {
			form.Error = forPeople(msg)
		}
		tok := s.refused.put(refusal{form: form, status: status, user: p.Actor.Name, request: id})
		to := "/requests/" + id + "?refused=" + tok
		if swap {
			// A whole page, as without script: htmx would swap a redirect's
			// page into the review instead of going there.
			c.Response().Header().Set("HX-Redirect", to)
			return c.NoContent(http.StatusOK)
		}
		return c.Redirect(http.StatusSeeOther, to)
	}
	done := string(form.Verdict)
	if res.Decision == nil {
		done = "vote"
	}
	to := "/requests/" + next + "?" + url.Values{"done": {done}, "from": {id}}.Encode()
	if next == "" || next == id {
		next, to = id, "/requests/"+id+"?done="+done
	}
	if !swap {
		return c.Redirect(http.StatusSeeOther, to)
	}
	return s.swapReview(c, next, id, done, to, head, res.Decision != nil)
}

// swapReview answers an htmx decision on from with the review of next (from
// itself when nothing else waits), to be swapped into the page at the
// address to: the article and the title, the outcome of the decision in its
// toast. head is the inbox's first page read before deciding: from leaves
// it when decided (a vote leaves it pending), which gives next's
// neighbours without reading the inbox again.
func (s *Server) swapReview(c echo.Context, next, from, done, to string, head []store.InboxRow, decided bool) error {
	t := timingOf(c)
	start := time.Now()
	var decidedReq *store.Request
	rows := make([]store.InboxRow, 0, len(head))
	for _, r := range head {
		if r.Request.ID == from {
			decidedReq = r.Request
			if decided {
				continue
			}
		}
		rows = append(rows, r)
	}
	v, err := s.reviewView(c, next, rows)
	if err != nil {
		return err
	}
	v.Fields = templates.EditFields(v.Action.Params, nil, nil)
	if next == from {
		decidedReq = nil
	} else if decidedReq == nil {
		decidedReq, _ = store.RequestGet(c.Request().Context(), s.Pool, from) // beyond the first page
	}
	v.Toast = toast(done, decidedReq, v.Request)
	v.Swapped = true
	t.add("load", start)
	c.Response().Header().Set("HX-Push-Url", to)
	return renderFragments(c, http.StatusOK, templates.Review(s.page(c, v.Request.Summary, "inbox"), v), "title", "review")
}

// editedParams builds the edited parameters from the edit form's typed
// fields, each read as the type its proposed value has; a value that does not
// read as that type is reported at its field (and nothing is decided). A
// client that sends the parameters whole, as JSON in edited_params, still
// can. The engine judges the result again by policy either way.
func (s *Server) editedParams(c echo.Context, id string, form *templates.DecisionForm) (map[string]any, error) {
	if form.EditedParams != "" {
		var out map[string]any
		if err := json.Unmarshal([]byte(form.EditedParams), &out); err != nil || out == nil {
			return nil, fmt.Errorf("%w: the edited parameters are not a JSON object", workflow.ErrInvalidInput)
		}
		return out, nil
	}
	req, err := store.RequestGet(c.Request().Context(), s.Pool, id)
	if err != nil {
		return nil, err
	}
	var action workflow.Action
	if err := json.Unmarshal(req.Action, &action); err != nil {
		return nil, fmt.Errorf("decode action: %w", err)
	}
	vals, err := c.FormParams()
	if err != nil {
		return nil, fmt.Errorf("%w: read the form: %v", workflow.ErrInvalidInput, err.Error())
	}
	form.Typed = map[string]string{}
	for k, v := range vals {
		if strings.HasPrefix(k, "param/") && len(v) > 0 {
			form.Typed[k] = v[0]
		}
	}
	form.FieldErrors = map[string]string{}
	out := readFields("", action.Params, form.Typed, form.FieldErrors)
	if len(form.FieldErrors) > 0 {
		form.Error = "Some edited values are not valid; see the fields marked below."
		return nil, fmt.Errorf("%w: %s", workflow.ErrInvalidInput, form.Error)
	}
	return out, nil
}

// readFields reads the edit form's fields for the parameters m under prefix,
// each as its proposed value's type, and records an error per bad field.
func readFields(prefix string, m map[string]any, typed, errs map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, orig := range m {
		ptr := prefix + "/" + strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
		kind := templates.FieldKind(orig)
		if kind == templates.FieldObject {
			out[k] = readFields(ptr, orig.(map[string]any), typed, errs)
			continue
		}
		raw, ok := typed[templates.EditFieldName(ptr)]
		if !ok {
			errs[ptr] = "missing from the form: reload the page"
			continue
		}
		switch kind {
		case templates.FieldText, templates.FieldLongText:
			// Browsers send a textarea's line breaks as CR LF.
			if !strings.Contains(orig.(string), "\r") {
				raw = strings.ReplaceAll(raw, "\r\n", "\n")
			}
			out[k] = raw
		case templates.FieldNumber:
			f, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
			if err != nil || strings.TrimSpace(raw) == "" {
				errs[ptr] = "must be a number, such as 12 or 12.50"
				continue
			}
			out[k] = f
		case templates.FieldBoolean:
			switch raw {
			case "true":
				out[k] = true
			case "false":
				out[k] = false
			default:
				errs[ptr] = "must be true or false"
			}
		default:
			var v any
			if err := json.Unmarshal([]byte(raw), &v); err != nil {
				errs[ptr] = "must be valid JSON"
				continue
			}
			if jsonKind(v) != jsonKind(orig) {
				errs[ptr] = "must stay " + jsonKind(orig)
				continue
			}
			out[k] = v
		}
	}
	return out
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64:
		return "a number"
	case string:
		return "text"
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	}
	return "a value"
}

// refusal is a refused decision, kept for the page the browser is sent back
// to: the form as it was sent, the reason and the status to answer with.
type refusal struct {
	form    templates.DecisionForm
	status  int
	user    string
	request string
	at      time.Time
}

// refusals holds refused decisions for a few minutes, in this process's
// memory: one more row type in the database for a message that lives
// seconds would cost more than it gives. Behind a balancer without sticky
// sessions the page shown may lack what was typed, never the decision's
// safety: nothing is decided by a refused POST. At most refusalCap are kept.
type refusals struct {
	mu   sync.Mutex
	byID map[string]refusal
}

const (
	refusalCap = 1000
	refusalTTL = 10 * time.Minute
)

func (r *refusals) put(x refusal) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := hex.EncodeToString(b)
	x.at = time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byID == nil {
		r.byID = map[string]refusal{}
	}
	for k, v := range r.byID {
		if time.Since(v.at) > refusalTTL || len(r.byID) >= refusalCap {
			delete(r.byID, k)
		}
	}
	r.byID[tok] = x
	return tok
}

// get returns a refusal for its user and request only: a token in a shared
// link shows nothing to anyone else.
func (r *refusals) get(tok, user, request string) (refusal, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	x, ok := r.byID[tok]
	if !ok || x.user != user || x.request != request || time.Since(x.at) > refusalTTL {
		return refusal{}, false
	}
	return x, true
}
