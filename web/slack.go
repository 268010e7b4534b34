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

// interaction is the part of Slack's block_actions payload used here.
type interaction struct {
	Type string `json:"type"`
	User struct {
		ID string `json:"id"`
	} `json:"user"`
	Channel struct {
		ID string `json:"id"`
	} `json:"channel"`
	Container struct {
		ChannelID string `json:"channel_id"`
	} `json:"container"`
	Actions []struct {
		ActionID string `json:"action_id"`
		Value    string `json:"value"`
	} `json:"actions"`
}

// handleSlackInteraction handles the "POST /slack/interactions" route: a
// click on an Approve or Reject button. There is no session and no CSRF
// token: Slack signs the request, and nothing is read or written before the
// signature and its timestamp are checked (401 otherwise, with no record:
// anonymous traffic grows nothing). The clicking Slack user is mapped to a
// Countersign user by their verified address (users.info), and the decision
// goes through the engine as the console's does: roles, no self-approval,
// the payload hash carried in the button, exactly once, audited with the
// channel "slack". Then every copy of the message is updated. Reject needs a
// reason, which a button cannot give: it answers with a link to the review
// page. Refusals are told to the clicker alone (an ephemeral message), and
// the answer to Slack is 200 whenever the request was genuine.
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
	if in.Type != "block_actions" || len(in.Actions) != 1 {
		return c.NoContent(http.StatusOK)
	}
	a := in.Actions[0]
	if a.ActionID != slack.ActionApprove && a.ActionID != slack.ActionReject {
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
	// Slack gives up on an answer after 3 s and may close the connection;
	// a decision begun must still finish, and every copy be updated.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	link := s.Slack.PublicURL + "/requests/" + requestID
	if a.ActionID == slack.ActionReject {
		s.slackSay(ctx, channel, in.User.ID, fmt.Sprintf("A rejection needs a reason for the run. Give it on the review page: <%s|open the request>.", slack.Escape(link)))
		return c.NoContent(http.StatusOK)
	}
	s.slackApprove(ctx, channel, in.User.ID, requestID, hash, link)
	return c.NoContent(http.StatusOK)
}

// slackApprove decides request id for the Slack user and says what came of it.
func (s *Server) slackApprove(ctx context.Context, channel, slackUser, requestID, hash, link string) {
	email, err := s.Slack.VerifiedEmail(ctx, slackUser)
	if err != nil {
		s.Logger.Info("slack approval refused: user not verified", "slack_user", slackUser, "err", err)
		s.slackSay(ctx, channel, slackUser, "Countersign cannot tell who you are: your Slack account has no confirmed email address it can read. Decide on the review page instead: <"+slack.Escape(link)+"|open the request>.")
		return
	}
	u, err := store.UserGetByEmail(ctx, s.Pool, email)
	if err != nil || u.Disabled {
		s.slackSay(ctx, channel, slackUser, "No active Countersign user has the address "+slack.Escape(email)+". Nothing was decided.")
		return
	}
	res, err := s.Engine.Decide(ctx, workflow.DecideParams{RequestID: requestID, Actor: actorOf(u), Verdict: vocab.VerdictApprove,
		PayloadHash: hash, Channel: "slack"})
	if err != nil {
		status, _, msg := httpError(err)
		if status >= 500 {
			s.Logger.Error("slack approval", "request", requestID, "err", err)
			msg = "Countersign could not record the decision; try again on the review page."
		}
		if errors.Is(err, workflow.ErrPayloadChanged) {
			msg = "The action changed since this message was sent; review it again on the review page."
		}
		s.slackSay(ctx, channel, slackUser, "Not approved: "+slack.Escape(msg)+" <"+slack.Escape(link)+"|Open the request>.")
		return
	}
	if res.Decision == nil {
		s.slackSay(ctx, channel, slackUser, fmt.Sprintf("Your approval is counted: %d of %d.", res.Votes, res.Required))
		return
	}
	outcome := fmt.Sprintf("Approved by %s in Slack at %s", u.Email, res.Decision.CreatedAt.UTC().Format("2006-01-02 15:04 UTC"))
	if err := s.Slack.ShowDecided(ctx, requestID, outcome); err != nil {
		s.Logger.Warn("slack messages not all updated", "request", requestID, "err", err)
	}
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
