// Package slack is the notice.Channel that posts to Slack, and the Web API
// calls its interactive buttons need. With a bot token, messages go through
// chat.postMessage to each recipient's direct messages (looked up by their
// Countersign address, users.lookupByEmail) or to one configured channel,
// and a request still waiting carries Approve / Reject buttons whose value
// binds the request id to the payload hash the message showed; every message
// with buttons is recorded so that a decision can update every copy
// (chat.update). With an incoming webhook, messages carry a link only: a
// webhook gives no way to learn who clicked.
//
// Model and agent text is escaped for mrkdwn (&, <, >, which also disarms
// <@U…>, <!channel> and links), sent with verbatim set so that Slack links
// nothing in it, and its invisible characters are written out as ⟨U+XXXX⟩
// tokens, as the console shows them.
package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/notice"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/templates"
)

// Action ids of the buttons. Reject and request changes open a modal that
// asks for the reason (OpenReasonModal).
const (
	ActionApprove        = "approve"
	ActionReject         = "reject"
	ActionRequestChanges = "request_changes"
)

// maxItems is how many items a digest shows, each with its buttons; the
// rest are counted, with a link to the inbox (Slack allows 50 blocks).
const maxItems = 10

// maxResponse bounds what is read of a Web API answer.
const maxResponse = 1 << 20

// Client calls Slack: the Web API with the bot token, or the incoming webhook.
type Client struct {
	cfg    config.Slack
	http   *http.Client
	pool   *pgxpool.Pool
	logger *slog.Logger
	// PublicURL is the console's address, for the inbox link of a digest.
	PublicURL string
	// ScheduleUpdateFunc inserts, in tx, the job that updates the copies of
	// a decided request (jobs.Scheduler.ScheduleChatUpdate); a message posted
	// just after a decision of a request it shows uses it to catch up. Nil:
	// no catching up.
	ScheduleUpdateFunc func(ctx context.Context, tx pgx.Tx, requestID string) error

	homeMu   sync.Mutex
	homeTeam home // the bot's team, once known
}

// New returns the Slack client and channel for cfg. httpClient sends the
// requests (the SSRF-checked client, so that a configured URL cannot reach
// a private address unless allowed); pool records posted messages.
func New(cfg config.Slack, httpClient *http.Client, pool *pgxpool.Pool, publicURL string, logger *slog.Logger) *Client {
	if logger == nil {
		logger = slog.Default()
	}
	return &Client{cfg: cfg, http: httpClient, pool: pool, logger: logger, PublicURL: strings.TrimSuffix(publicURL, "/")}
}

// Config is the Slack configuration the client was built with.
func (c *Client) Config() config.Slack { return c.cfg }

// Name implements notice.Channel.
func (*Client) Name() string { return "slack" }

// Send implements notice.Channel: one Slack message per notice message.
func (c *Client) Send(ctx context.Context, m notice.Message) error {
	buttons := c.cfg.Interactive()
	blocks, requests := Blocks(m, buttons, c.PublicURL)
	text := fallback(m)
	if c.cfg.BotToken == "" {
		return c.postWebhook(ctx, text, blocks)
	}
	channel := c.cfg.Channel
	if channel == "" {
		if m.To.Email == "" {
			return fmt.Errorf("user %d has no mail address to find in Slack", m.To.UserID)
		}
		id, err := c.LookupByEmail(ctx, m.To.Email)
		if err != nil {
			return err
		}
		channel = id // posting to a user id opens the app's direct messages with them
	}
	var out struct {
		Channel string `json:"channel"`
		TS      string `json:"ts"`
	}
	if err := c.API(ctx, "chat.postMessage", map[string]any{"channel": channel, "text": text, "blocks": blocks,
		"parse": "none", "unfurl_links": false, "unfurl_media": false}, &out); err != nil {
		return err
	}
	if len(requests) == 0 {
		return nil
	}
	raw, err := json.Marshal(blocks)
	if err != nil {
		return fmt.Errorf("slack blocks: %w", err)
	}
	// The message is out: a failure to record it must not post it again,
	// so it is logged and the message counts as sent (it cannot be updated).
	posted := store.SlackMessage{Channel: out.Channel, TS: out.TS, RequestIDs: requests, Blocks: raw, Text: text}
	if err := store.SlackMessageInsert(context.WithoutCancel(ctx), c.pool, posted); err != nil {
		c.logger.Warn("slack message posted but not recorded; a decision will not update it", "channel", out.Channel, "ts", out.TS, "err", err)
		return nil
	}
	for _, id := range requests {
		if err := c.catchUp(context.WithoutCancel(ctx), posted, id); err != nil {
			c.logger.Warn("slack message posted as its request was decided; it may keep its buttons", "channel", out.Channel, "ts", out.TS,
				"request", id, "err", err)
		}
	}
	return nil
}

// catchUp has a copy just recorded show the decision of request id if one
// was made while the copy was built and posted: that decision's transaction
// did not see the copy (notice.Outbox.Decided found nothing to update). The
// read waits for a decision being committed, so that every decision is seen
// either there or here. One transaction per request: it holds one request's
// lock at a time, so it cannot deadlock with a batch deciding several.
func (c *Client) catchUp(ctx context.Context, m store.SlackMessage, id string) error {
	if c.ScheduleUpdateFunc == nil {
		return nil
	}
	return store.WithTx(ctx, c.pool, func(ctx context.Context, tx pgx.Tx) error {
		decided, err := store.SlackDecidedAmong(ctx, tx, []string{id})
		if err != nil {
			return err
		}
		for _, d := range decided {
			outcome := notice.Decided{RequestID: d.RequestID, Verdict: d.Verdict, Actor: d.Actor, Channel: d.Channel, At: d.At,
				Expired: strings.HasPrefix(d.Actor, "policy:") && d.Deadline != nil && !d.At.Before(*d.Deadline)}.Outcome()
			added, err := store.SlackUpdateInsert(ctx, tx, d.RequestID, m, outcome)
			if err != nil {
				return err
			}
			if added {
				if err := c.ScheduleUpdateFunc(ctx, tx, d.RequestID); err != nil {
					return fmt.Errorf("schedule chat update of request %s: %w", d.RequestID, err)
				}
			}
		}
		return nil
	})
}

// APIError is an answer of the Web API with ok false.
type APIError struct {
	Method string
	Code   string // Slack's error code, e.g. "channel_not_found"
}

func (e *APIError) Error() string { return "slack " + e.Method + ": " + e.Code }

// API calls a Web API method with a JSON body and the bot token, and
// decodes the answer into out (when not nil). Returns *APIError when Slack
// answers ok: false.
func (c *Client) API(ctx context.Context, method string, body any, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("slack %s: %w", method, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.APIURL+"/"+method, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("slack %s: %w", method, err)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	return c.do(req, method, out)
}

// apiForm calls a Web API method that takes form arguments (the read
// methods do not accept JSON bodies).
func (c *Client) apiForm(ctx context.Context, method string, args url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.APIURL+"/"+method, strings.NewReader(args.Encode()))
	if err != nil {
		return fmt.Errorf("slack %s: %w", method, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req, method, out)
}

func (c *Client) do(req *http.Request, method string, out any) error {
	req.Header.Set("Authorization", "Bearer "+c.cfg.BotToken)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("slack %s: %w", method, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("slack %s: %w", method, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("slack %s: HTTP %d", method, resp.StatusCode)
	}
	var status struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(data, &status); err != nil {
		return fmt.Errorf("slack %s: answer: %w", method, err)
	}
	if !status.OK {
		return &APIError{Method: method, Code: status.Error}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("slack %s: answer: %w", method, err)
		}
	}
	return nil
}

func (c *Client) postWebhook(ctx context.Context, text string, blocks []Block) error {
	b, err := json.Marshal(map[string]any{"text": text, "blocks": blocks, "unfurl_links": false})
	if err != nil {
		return fmt.Errorf("slack webhook: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.WebhookURL, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("slack webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		// The webhook's URL is its secret: *url.Error would name it in an
		// error that is logged, stored and shown in the console.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("slack webhook: %w", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("slack webhook: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(data)))
	}
	return nil
}

// LookupByEmail returns the Slack user id with that address
// (users.lookupByEmail; needs users:read.email).
func (c *Client) LookupByEmail(ctx context.Context, email string) (string, error) {
	var out struct {
		User struct {
			ID string `json:"id"`
		} `json:"user"`
	}
	if err := c.apiForm(ctx, "users.lookupByEmail", url.Values{"email": {email}}, &out); err != nil {
		return "", err
	}
	return out.User.ID, nil
}

// ErrUnverified is returned for a Slack user whose address cannot be
// trusted to name a Countersign user: none, unconfirmed, a bot, deleted, or
// a member of another organization (Slack Connect).
var ErrUnverified = errors.New("slack user has no verified email address")

// home is the bot's own Slack team and, on Enterprise Grid, organization.
type home struct {
	Team       string `json:"team_id"`
	Enterprise string `json:"enterprise_id"`
}

// home returns the team the bot token belongs to (auth.test), asked once.
func (c *Client) home(ctx context.Context) (home, error) {
	c.homeMu.Lock()
	defer c.homeMu.Unlock()
	if c.homeTeam != (home{}) {
		return c.homeTeam, nil
	}
	var h home
	if err := c.apiForm(ctx, "auth.test", url.Values{}, &h); err != nil {
		return h, err
	}
	if h == (home{}) {
		// An org-wide install on Enterprise Grid may name only its organization.
		return h, errors.New("slack auth.test: no team_id nor enterprise_id")
	}
	c.homeTeam = h
	return h, nil
}

// VerifiedEmail returns the confirmed address of Slack user id (users.info;
// needs users:read and users:read.email). Returns an error wrapping
// ErrUnverified when there is none to trust. The user must belong to the
// bot's own team (or its Enterprise Grid organization): a member of another
// organization, met in a Slack Connect channel, has an address that their
// own organization vouches for (its SSO can assert any), not this one.
func (c *Client) VerifiedEmail(ctx context.Context, id string) (string, error) {
	var out struct {
		User struct {
			TeamID           string `json:"team_id"`
			Deleted          bool   `json:"deleted"`
			IsBot            bool   `json:"is_bot"`
			IsEmailConfirmed bool   `json:"is_email_confirmed"`
			Profile          struct {
				Email string `json:"email"`
			} `json:"profile"`
			EnterpriseUser *struct {
				EnterpriseID string `json:"enterprise_id"`
			} `json:"enterprise_user"`
		} `json:"user"`
	}
	if err := c.apiForm(ctx, "users.info", url.Values{"user": {id}}, &out); err != nil {
		return "", err
	}
	u := out.User
	if u.Deleted || u.IsBot || !u.IsEmailConfirmed || u.Profile.Email == "" {
		return "", fmt.Errorf("%w: %s", ErrUnverified, id)
	}
	h, err := c.home(ctx)
	if err != nil {
		return "", err
	}
	sameOrg := h.Enterprise != "" && u.EnterpriseUser != nil && u.EnterpriseUser.EnterpriseID == h.Enterprise
	if (h.Team == "" || u.TeamID != h.Team) && !sameOrg {
		return "", fmt.Errorf("%w: %s belongs to another Slack team (%s)", ErrUnverified, id, u.TeamID)
	}
	return u.Profile.Email, nil
}

// SameAddress reports whether a and b are the same mail address, up to the
// case of ASCII letters only. Unicode case mapping (Go's strings.ToLower,
// PostgreSQL's lower(), strings.EqualFold) makes "rev\u0130ewer" or a Kelvin
// sign "\u212A" equal to ASCII letters, so that a Slack account confirmed at
// another mailbox would act as the Countersign user of that ASCII address.
func SameAddress(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Ephemeral shows text to user only, in channel (chat.postEphemeral).
func (c *Client) Ephemeral(ctx context.Context, channel, user, text string) error {
	return c.API(ctx, "chat.postEphemeral", map[string]any{"channel": channel, "user": user, "text": text}, nil)
}

// Block is a Block Kit block (only the fields used here).
type Block struct {
	Type     string    `json:"type"`
	BlockID  string    `json:"block_id,omitempty"`
	Text     *Text     `json:"text,omitempty"`
	Fields   []Text    `json:"fields,omitempty"`
	Elements []Element `json:"elements,omitempty"`
}

// Text is a text object.
type Text struct {
	Type     string `json:"type"` // mrkdwn or plain_text
	Text     string `json:"text"`
	Verbatim bool   `json:"verbatim,omitempty"`
}

// Element is a button, or a text object in a context block.
type Element struct {
	Type     string `json:"type"`
	Text     any    `json:"text,omitempty"`
	ActionID string `json:"action_id,omitempty"`
	Value    string `json:"value,omitempty"`
	URL      string `json:"url,omitempty"`
	Style    string `json:"style,omitempty"`
	Verbatim bool   `json:"verbatim,omitempty"`
}

// requestBlock names the block that holds a request's buttons.
func requestBlock(id string) string { return "req:" + id }

// ButtonValue is what a decision button carries: the request and the
// payload hash the message was built from, so that a click decides exactly
// what was shown.
func ButtonValue(requestID, payloadHash string) string { return requestID + "|" + payloadHash }

// ParseButtonValue splits a ButtonValue; ok is false for anything else.
func ParseButtonValue(v string) (requestID, payloadHash string, ok bool) {
	requestID, payloadHash, ok = strings.Cut(v, "|")
	return requestID, payloadHash, ok && requestID != "" && payloadHash != "" && len(v) <= 300
}

// Blocks renders m in Block Kit, and lists the requests that got buttons
// (buttons only when interactive, only for requests still waiting).
func Blocks(m notice.Message, interactive bool, publicURL string) ([]Block, []string) {
	var blocks []Block
	var requests []string
	head := "Countersign needs your attention."
	if m.Digest() {
		head = fmt.Sprintf("%d things need your attention in Countersign.", len(m.Items))
	}
	blocks = append(blocks, Block{Type: "section", Text: &Text{Type: "mrkdwn", Text: head}})
	for i, it := range m.Items {
		if i == maxItems {
			blocks = append(blocks, Block{Type: "context", Elements: []Element{{Type: "mrkdwn",
				Text: fmt.Sprintf("…and %d more: <%s|open the inbox>", len(m.Items)-maxItems, Escape(publicURL+"/"))}}})
			break
		}
		blocks = append(blocks, Block{Type: "divider"}, Block{Type: "section", Text: &Text{Type: "mrkdwn", Text: itemText(it), Verbatim: true}})
		var elems []Element
		if it.Link != "" {
			elems = append(elems, Element{Type: "button", Text: plainText("Open review page"), URL: it.Link, ActionID: "open"})
		}
		decidable := it.RequestID != "" && it.PayloadHash != "" && it.Pending && it.Kind != notice.DecisionRecorded && it.Kind != notice.DeadlinePassed
		if interactive && decidable {
			v := ButtonValue(it.RequestID, it.PayloadHash)
			elems = append(elems,
				Element{Type: "button", Text: plainText("Approve"), ActionID: ActionApprove, Value: v, Style: "primary"},
				Element{Type: "button", Text: plainText("Reject"), ActionID: ActionReject, Value: v, Style: "danger"},
				Element{Type: "button", Text: plainText("Request changes"), ActionID: ActionRequestChanges, Value: v})
			requests = append(requests, it.RequestID)
		}
		if len(elems) > 0 {
			b := Block{Type: "actions", Elements: elems}
			if it.RequestID != "" {
				b.BlockID = requestBlock(it.RequestID)
			}
			blocks = append(blocks, b)
		}
	}
	return blocks, requests
}

func plainText(s string) map[string]any { return map[string]any{"type": "plain_text", "text": s} }

// markDecided replaces the buttons of request id with outcome.
func markDecided(blocks []Block, id, outcome string) []Block {
	for i, b := range blocks {
		if b.BlockID == requestBlock(id) && b.Type == "actions" {
			blocks[i] = Block{Type: "context", BlockID: b.BlockID, Elements: []Element{{Type: "mrkdwn", Text: Escape(outcome), Verbatim: true}}}
		}
	}
	return blocks
}

// itemText is one item in mrkdwn: labels are ours, values are escaped.
func itemText(it notice.Item) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%s*", Escape(it.Title))
	line := func(label, v string, n int) {
		if v != "" {
			fmt.Fprintf(&b, "\n*%s:* %s", label, shown(v, n))
		}
	}
	action := it.ActionKind
	if action != "" && it.Target != "" {
		action += " on " + it.Target
	}
	line("Action", action, 200)
	line("Summary", it.Summary, 500)
	line("Risk", it.Risk, 50)
	line("Rule", it.Rule, 200)
	if it.Deadline != nil {
		line("Deadline", it.Deadline.UTC().Format("2006-01-02 15:04 UTC"), 50)
	}
	line("Detail", it.Detail, 300)
	return b.String()
}

// fallback is the message's plain notification text (shown in alerts).
func fallback(m notice.Message) string {
	if m.Digest() {
		return fmt.Sprintf("Countersign: %d notifications", len(m.Items))
	}
	if len(m.Items) == 0 {
		return "Countersign"
	}
	it := m.Items[0]
	s := "Countersign: " + it.Title
	if it.Summary != "" {
		s += " — " + clip(it.Summary, 100)
	}
	return Escape(s)
}

// Escape makes s safe in mrkdwn: its invisible characters become ⟨U+XXXX⟩
// tokens, and &, < and > become entities, so that no <@U…>, <!here>,
// <!channel> or <url|label> can be written by model text. Slack asks for
// exactly these three to be escaped.
func Escape(s string) string {
	var b strings.Builder
	for _, p := range templates.Visible(s, false) {
		b.WriteString(p.Text)
	}
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
	return r.Replace(b.String())
}

// shown is v escaped for mrkdwn, clipped to n characters before and to 2n
// after: each invisible character becomes an eight-character token and each
// < an entity, so model text made of them would otherwise grow the block
// past Slack's 3000 characters, and Slack would refuse the whole message or
// modal (a notice never delivered, a reason never asked). A cut token or
// entity stays visible text.
func shown(v string, n int) string {
	return clip(Escape(clip(v, n)), 2*n)
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

// interface check
var _ notice.Channel = (*Client)(nil)
