package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/notice/slack"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// slackPath is where Slack sends button clicks (the app's interactivity URL).
const slackPath = "/slack/interactions"

// maxSlackBody bounds an interaction's body; Slack's are a few KiB.
const maxSlackBody = 64 << 10

// slackBodyKey holds the raw body in the request's context values.
const slackBodyKey = "slack.body"

// slackRawBody keeps the exact bytes of an interaction, which the signature
// covers, before anything parses the form (cleanInput does). A body over
// maxSlackBody is refused before it is read further.
func slackRawBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.URL.Path != slackPath || r.Method != http.MethodPost {
			return next(c)
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxSlackBody+1))
		if err != nil {
			return echo.NewHTTPError(http.StatusBadRequest, "the body could not be read")
		}
		if len(body) > maxSlackBody {
			return echo.NewHTTPError(http.StatusRequestEntityTooLarge, "the body is too large")
		}
		c.Set(slackBodyKey, body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		return next(c)
	}
}

// interaction is the part of Slack's interaction payloads used here: a
// click (block_actions) or a modal's submission (view_submission).
type interaction struct {
	Type string `json:"type"`
	User struct {
		ID string `json:"id"`
	} `json:"user"`
	TriggerID string `json:"trigger_id"`
	Channel   struct {
		ID string `json:"id"`
	} `json:"channel"`
	Container struct {
		ChannelID string `json:"channel_id"`
	} `json:"container"`
	Actions []struct {
		ActionID string `json:"action_id"`
		Value    string `json:"value"`
	} `json:"actions"`
	View struct {
		CallbackID      string `json:"callback_id"`
		PrivateMetadata string `json:"private_metadata"`
		State           struct {
			Values map[string]map[string]struct {
				Value *string `json:"value"`
			} `json:"values"`
		} `json:"state"`
	} `json:"view"`
}

// handleSlackInteraction handles the "POST /slack/interactions" route: a
// click on a decision button, or the submission of the modal that asks for
// a reason. There is no session and no CSRF token: Slack signs the request,
// and nothing is read or written before the signature and its timestamp are
// checked (401 otherwise, with no record: anonymous traffic grows nothing).
// The Slack user is mapped to a Countersign user by their verified address
// (users.info), and the decision goes through the engine as the console's
// does: roles, no self-approval, the payload hash carried in the button,
// exactly once, audited with the channel "slack". The decision's own
// transaction has every copy of the message updated (notice.Outbox.Decided).
// Approve decides at once; Reject and Request changes open a modal
// (views.open) asking for the reason, and its submission decides. Refusals
// are told to the clicker alone (an ephemeral message), or shown in the
// modal's errors; the answer to Slack is 200 whenever the request was genuine.
func (s *Server) handleSlackInteraction(c echo.Context) error {
	if s.Slack == nil || !s.Slack.Config().Interactive() {
		return echo.NewHTTPError(http.StatusNotFound, "not found")
	}
	body, _ := c.Get(slackBodyKey).([]byte)
	r := c.Request()
	if err := slack.Verify(s.Slack.Config().SigningSecret, r.Header.Get(slack.HeaderTimestamp), r.Header.Get(slack.HeaderSignature), body, s.Now()); err != nil {
		return echo.NewHTTPError(http.StatusUnauthorized, "the request is not signed by Slack")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "the body is not a form")
	}
	var in interaction
	if err := json.Unmarshal([]byte(form.Get("payload")), &in); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "the payload is not JSON")
	}
	// Slack gives up on an answer after 3 s and may close the connection;
	// a decision begun must still finish.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	switch in.Type {
	case "block_actions":
		return s.slackClick(ctx, c, &in)
	case "view_submission":
		return s.slackSubmit(ctx, c, &in)
	}
	return c.NoContent(http.StatusOK)
}

// slackClick handles a button: Approve decides; Reject and Request changes
// open the modal that asks for the reason.
func (s *Server) slackClick(ctx context.Context, c echo.Context, in *interaction) error {
	if len(in.Actions) != 1 {
		return c.NoContent(http.StatusOK)
	}
	a := in.Actions[0]
	verdict := map[string]vocab.Verdict{slack.ActionApprove: vocab.VerdictApprove, slack.ActionReject: vocab.VerdictReject,
		slack.ActionRequestChanges: vocab.VerdictRequestChanges}[a.ActionID]
	if verdict == "" {
		return c.NoContent(http.StatusOK) // the link button reports its clicks too
	}
	requestID, hash, ok := slack.ParseButtonValue(a.Value)
	if !ok || !store.IsID(requestID) {
		return echo.NewHTTPError(http.StatusBadRequest, "the button's value is not a request")
	}
	channel := in.Container.ChannelID
	if channel == "" {
		channel = in.Channel.ID
	}
	link := s.slackLink(requestID)
	if verdict == vocab.VerdictApprove {
		s.slackApprove(ctx, channel, in.User.ID, requestID, hash, link)
		return c.NoContent(http.StatusOK)
	}
	// The trigger is good for three seconds: the modal opens first, and who
	// is submitting it is checked when it is submitted. A request that no
	// longer waits gets no modal.
	req, err := store.RequestGet(ctx, s.Pool, requestID)
	if errors.Is(err, store.ErrNotFound) {
		s.slackSay(ctx, channel, in.User.ID, "This request no longer exists.")
		return c.NoContent(http.StatusOK)
	} else if err != nil {
		return err
	}
	if req.Status != vocab.RequestPending {
		s.slackSay(ctx, channel, in.User.ID, fmt.Sprintf("This request no longer waits: it is %s. <%s|Open the request>.", slack.Escape(string(req.Status)), link))
		return c.NoContent(http.StatusOK)
	}
	title := req.ActionKind
	if req.Summary != "" {
		title += ": " + req.Summary
	}
	view := slack.ReasonModal(slack.ModalState{RequestID: requestID, PayloadHash: hash, Verdict: verdict}, title)
	if err := s.Slack.OpenModal(ctx, in.TriggerID, view); err != nil {
		s.Logger.Warn("slack modal not opened", "request", requestID, "err", err)
		s.slackSay(ctx, channel, in.User.ID, "Countersign could not open the form for the reason. Give it on the review page: <"+link+"|open the request>.")
	}
	return c.NoContent(http.StatusOK)
}

// slackSubmit handles the reason modal's submission: it decides with the
// reason given, through the same path as a click, and answers with the
// modal's errors when the decision is refused (the modal stays open and
// says why); an empty answer closes it.
func (s *Server) slackSubmit(ctx context.Context, c echo.Context, in *interaction) error {
	if in.View.CallbackID != slack.ModalCallback {
		return c.NoContent(http.StatusOK)
	}
	st, ok := slack.ParseModalState(in.View.PrivateMetadata)
	if !ok || !store.IsID(st.RequestID) {
		return echo.NewHTTPError(http.StatusBadRequest, "the modal's state is not a request")
	}
	var given string
	if v := in.View.State.Values[slack.ReasonBlock][slack.ReasonAction].Value; v != nil {
		given = *v
	}
	refuse := func(msg string) error {
		return c.JSON(http.StatusOK, map[string]any{"response_action": "errors", "errors": map[string]string{slack.ReasonBlock: msg}})
	}
	reason, problem := slack.CheckReason(st.Verdict, given)
	if problem != "" {
		return refuse(problem)
	}
	u, problem := s.slackUser(ctx, in.User.ID)
	if problem != "" {
		return refuse(problem + " Nothing was decided.")
	}
	if _, problem := s.slackDecide(ctx, u, workflow.DecideParams{RequestID: st.RequestID, Verdict: st.Verdict, Reason: reason,
		PayloadHash: st.PayloadHash}); problem != "" {
		return refuse(problem)
	}
	return c.NoContent(http.StatusOK)
}

// slackApprove decides request id for the Slack user, or tells them why not.
func (s *Server) slackApprove(ctx context.Context, channel, slackUser, requestID, hash, link string) {
	u, problem := s.slackUser(ctx, slackUser)
	if problem != "" {
		s.slackSay(ctx, channel, slackUser, slack.Escape(problem)+" Nothing was decided. Decide on the review page instead: <"+link+"|open the request>.")
		return
	}
	res, problem := s.slackDecide(ctx, u, workflow.DecideParams{RequestID: requestID, Verdict: vocab.VerdictApprove, PayloadHash: hash})
	if problem != "" {
		s.slackSay(ctx, channel, slackUser, "Not approved: "+slack.Escape(problem)+" <"+link+"|Open the request>.")
		return
	}
	if res.Decision == nil {
		s.slackSay(ctx, channel, slackUser, fmt.Sprintf("Your approval is counted: %d of %d.", res.Votes, res.Required))
	}
}

// slackUser is the active Countersign user with the verified address of
// Slack user id, or, when there is none, what to tell them (plain text).
func (s *Server) slackUser(ctx context.Context, id string) (*store.User, string) {
	email, err := s.Slack.VerifiedEmail(ctx, id)
	if err != nil {
		s.Logger.Info("slack decision refused: user not verified", "slack_user", id, "err", err)
		return nil, "Countersign cannot tell who you are: your Slack account has no confirmed email address it can read."
	}
	// The store matches addresses with lower(), which folds some non-ASCII
	// letters into ASCII ones: the match must be exact but for ASCII case.
	u, err := store.UserGetByEmail(ctx, s.Pool, email)
	if err != nil || u.Disabled || !slack.SameAddress(u.Email, email) {
		if err == nil && !u.Disabled {
			s.Logger.Warn("slack decision refused: address only matches a user under Unicode case folding", "slack_user", id)
		}
		return nil, "No active Countersign user has the address " + email + "."
	}
	return u, ""
}

// slackDecide decides as u, in Slack, or says why not (plain text).
func (s *Server) slackDecide(ctx context.Context, u *store.User, p workflow.DecideParams) (*workflow.DecideResult, string) {
	p.Actor, p.Channel = actorOf(u), "slack"
	res, err := s.Engine.Decide(ctx, p)
	if err == nil {
		return res, ""
	}
	status, _, msg := httpError(err)
	if status >= 500 {
		s.Logger.Error("slack decision", "request", p.RequestID, "err", err)
		msg = "Countersign could not record the decision; try again on the review page."
	}
	if errors.Is(err, workflow.ErrPayloadChanged) {
		msg = "The action changed since this message was sent; review it again on the review page."
	}
	return nil, msg
}

// slackLink is the review page of request id, escaped for mrkdwn.
func (s *Server) slackLink(requestID string) string {
	return slack.Escape(s.Slack.PublicURL + "/requests/" + requestID)
}

// slackSay tells user alone, in channel; a failure is only logged, since
// the click's outcome is recorded either way.
func (s *Server) slackSay(ctx context.Context, channel, user, text string) {
	if channel == "" || user == "" {
		return
	}
	if err := s.Slack.Ephemeral(ctx, channel, user, text); err != nil {
		s.Logger.Warn("slack ephemeral message", "err", err)
	}
}
