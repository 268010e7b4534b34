// Package mcpserver serves the approvals API to MCP clients (coding agents,
// tool hosts) over streamable HTTP, with the official Go SDK: the tools
// request_approval and get_approval call the same ask.Service as
// POST /api/v1/approvals and GET /api/v1/approvals/{id}, as the calling
// token's user. It knows no HTTP status beyond the bearer check and no SQL.
package mcpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/ask"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
)

// MaxBody bounds one MCP request, as the server's body limit bounds an API
// call: an action is limited far below it.
const MaxBody = 1 << 20

// DefaultWait is how long request_approval waits for a decision when the
// call does not say: long enough for an auto or quick decision, short
// enough for a client's request timeout.
const DefaultWait = 30 * time.Second

// Approvals is what the tools call: ask.Service.
type Approvals interface {
	Submit(ctx context.Context, caller ask.Caller, sub ask.Submission) (*ask.Approval, bool, error)
	Get(ctx context.Context, caller ask.Caller, id string, wait time.Duration) (*ask.Approval, error)
}

// ErrRefused is what an Authenticate function returns for a token that is
// unknown, revoked, expired or whose user is disabled: the request gets 401.
var ErrRefused = errors.New("token refused")

// Authenticate returns the caller a bearer secret stands for. Returns an
// error wrapping ErrRefused for a token that does not authenticate.
type Authenticate func(ctx context.Context, secret string) (ask.Caller, error)

// callerKey holds the caller in auth.TokenInfo.Extra, which the SDK hands
// each tool call.
const callerKey = "countersign.caller"

// Handler returns the /mcp endpoint: a bearer check (401 with
// WWW-Authenticate without a valid token, 403 without the approvals:write
// scope) in front of a stateless streamable HTTP MCP server.
func Handler(svc Approvals, authenticate Authenticate, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.Default()
	}
	server := NewServer(svc, logger)
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, &mcp.StreamableHTTPOptions{
		// Stateless: no session lives in one process's memory, so any of
		// several web processes behind a balancer answers any call.
		Stateless:           true,
		JSONResponse:        true,
		MaxRequestBodyBytes: MaxBody,
		// The SDK refuses loopback connections whose Host is not loopback,
		// against DNS rebinding of cookie- or network-trusted local servers.
		// Every call here carries a bearer token a rebinding page does not
		// have, and a reverse proxy on the same host sends its public Host.
		DisableLocalhostProtection: true,
		Logger:                     logger,
	})
	verify := func(ctx context.Context, secret string, _ *http.Request) (*auth.TokenInfo, error) {
		caller, err := authenticate(ctx, secret)
		if errors.Is(err, ErrRefused) {
			return nil, fmt.Errorf("%w: %v", auth.ErrInvalidToken, err)
		} else if err != nil {
			// Not the caller's fault, and not for them to read.
			logger.Error("mcp: authenticate", "err", err)
			return nil, errors.New("the token could not be checked")
		}
		return &auth.TokenInfo{Scopes: caller.Scopes, UserID: strconv.FormatInt(caller.UserID, 10),
			Extra: map[string]any{callerKey: caller}}, nil
	}
	// Expiry is checked by authenticate, on the server's clock.
	return auth.RequireBearerToken(verify, &auth.RequireBearerTokenOptions{
		Scopes: []string{account.ScopeApprovalsWrite}, AllowMissingExpiration: true,
	})(h)
}

// NewServer returns the MCP server with its two tools.
func NewServer(svc Approvals, logger *slog.Logger) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "countersign", Title: "Countersign approvals", Version: "1"},
		&mcp.ServerOptions{Instructions: "Before an action with side effects, call request_approval and act only " +
			"when its status is approved, with outcome.params. Pending: call get_approval with the id to wait more. " +
			"changes_requested: revise the action as outcome.reason asks and file it again with revises set."})
	t := &tools{svc: svc, logger: logger}
	f := false
	mcp.AddTool(s, &mcp.Tool{
		Name:  "request_approval",
		Title: "Request approval",
		Description: "File an action for a human's approval under Countersign's policy and wait up to wait_seconds " +
			"(default 30, at most 60) for the decision. Returns the approval: status approved (execute outcome.params, " +
			"which a reviewer may have edited), rejected, changes_requested (see outcome.reason), or pending (call " +
			"get_approval with its id). The same idempotency_key returns the same approval.",
		InputSchema:  inputSchema[requestInput](),
		OutputSchema: approvalSchema,
		Annotations: &mcp.ToolAnnotations{Title: "Request approval", ReadOnlyHint: false, DestructiveHint: &f,
			IdempotentHint: true, OpenWorldHint: &f},
	}, t.request)
	mcp.AddTool(s, &mcp.Tool{
		Name:  "get_approval",
		Title: "Get approval",
		Description: "Read an approval filed with request_approval, waiting up to wait_seconds (default 30, at most 60) " +
			"for it to be decided.",
		InputSchema:  inputSchema[getInput](),
		OutputSchema: approvalSchema,
		Annotations:  &mcp.ToolAnnotations{Title: "Get approval", ReadOnlyHint: true, OpenWorldHint: &f},
	}, t.get)
	return s
}

// requestInput is request_approval's arguments.
type requestInput struct {
	IdempotencyKey string         `json:"idempotency_key" jsonschema:"a key unique to this action, e.g. the tool call id; 1 to 200 characters"`
	Action         actionInput    `json:"action" jsonschema:"the action to approve"`
	Context        map[string]any `json:"context,omitempty" jsonschema:"free-form context for the reviewer: agent, session, tool_call_id"`
	Revises        string         `json:"revises,omitempty" jsonschema:"the id of an approval that ended changes_requested, which this action revises"`
	WaitSeconds    *int           `json:"wait_seconds,omitempty" jsonschema:"how long to wait for the decision, 0 to 60 seconds (default 30)"`
}

// actionInput is workflow.Action with only kind and summary required.
type actionInput struct {
	Kind          string           `json:"kind" jsonschema:"what kind of action, e.g. payment.refund or deploy"`
	Summary       string           `json:"summary" jsonschema:"what the action does, in one line a reviewer reads"`
	Target        string           `json:"target,omitempty" jsonschema:"what the action acts on"`
	Params        map[string]any   `json:"params,omitempty" jsonschema:"the parameters the action will be executed with"`
	Current       map[string]any   `json:"current,omitempty" jsonschema:"the present state, shown as a diff against params"`
	Risk          string           `json:"risk,omitempty" jsonschema:"low, medium or high"`
	Reversible    bool             `json:"reversible,omitempty" jsonschema:"whether the action can be undone"`
	EstimatedCost float64          `json:"estimated_cost,omitempty" jsonschema:"what the action costs, if anything"`
	Rationale     string           `json:"rationale,omitempty" jsonschema:"why the agent wants to do it"`
	Checks        []workflow.Check `json:"checks,omitempty" jsonschema:"automated checks already run, with their results"`
}

// getInput is get_approval's arguments.
type getInput struct {
	ID          string `json:"id" jsonschema:"the approval's id, as request_approval returned it"`
	WaitSeconds *int   `json:"wait_seconds,omitempty" jsonschema:"how long to wait for a decision, 0 to 60 seconds (default 30)"`
}

type tools struct {
	svc    Approvals
	logger *slog.Logger
}

func (t *tools) request(ctx context.Context, req *mcp.CallToolRequest, in requestInput) (*mcp.CallToolResult, *ask.Approval, error) {
	caller, err := callerOf(req)
	if err != nil {
		return nil, nil, err
	}
	wait, err := waitOf(in.WaitSeconds)
	if err != nil {
		return nil, nil, err
	}
	if err := exactNumbers(req, &in); err != nil {
		return nil, nil, err
	}
	var actx json.RawMessage
	if in.Context != nil {
		if actx, err = json.Marshal(in.Context); err != nil {
			return nil, nil, fmt.Errorf("context: %w", err)
		}
	}
	act := in.Action
	a, _, err := t.svc.Submit(ctx, caller, ask.Submission{IdempotencyKey: in.IdempotencyKey, Context: actx, Revises: in.Revises,
		Action: workflow.Action{Kind: act.Kind, Summary: act.Summary, Target: act.Target, Params: act.Params, Current: act.Current,
			Risk: act.Risk, Reversible: act.Reversible, EstimatedCost: act.EstimatedCost, Rationale: act.Rationale, Checks: act.Checks}})
	if err != nil {
		return nil, nil, t.toolError("request_approval", err)
	}
	return t.answer(ctx, caller, a, wait)
}

// exactNumbers decodes the call's raw arguments again with numbers as
// written: the SDK decodes them with float64, which rounds an integer over
// 2^53, and the params an agent executes must be the params it filed.
func exactNumbers(req *mcp.CallToolRequest, in *requestInput) error {
	if req == nil || req.Params == nil || len(req.Params.Arguments) == 0 {
		return nil
	}
	var exact struct {
		Action struct {
			Params  map[string]any `json:"params"`
			Current map[string]any `json:"current"`
		} `json:"action"`
		Context map[string]any `json:"context"`
	}
	dec := json.NewDecoder(bytes.NewReader(req.Params.Arguments))
	dec.UseNumber()
	if err := dec.Decode(&exact); err != nil {
		return fmt.Errorf("arguments: %w", err)
	}
	in.Action.Params, in.Action.Current, in.Context = exact.Action.Params, exact.Action.Current, exact.Context
	return nil
}

func (t *tools) get(ctx context.Context, req *mcp.CallToolRequest, in getInput) (*mcp.CallToolResult, *ask.Approval, error) {
	caller, err := callerOf(req)
	if err != nil {
		return nil, nil, err
	}
	wait, err := waitOf(in.WaitSeconds)
	if err != nil {
		return nil, nil, err
	}
	a, err := t.svc.Get(ctx, caller, strings.TrimSpace(in.ID), wait)
	if err != nil {
		return nil, nil, t.toolError("get_approval", err)
	}
	return t.answer(ctx, caller, a, 0)
}

// answer waits for a pending approval, then returns it as structured content
// with a one-line summary for clients that read only text.
func (t *tools) answer(ctx context.Context, caller ask.Caller, a *ask.Approval, wait time.Duration) (*mcp.CallToolResult, *ask.Approval, error) {
	if !a.Decided() && wait > 0 {
		next, err := t.svc.Get(ctx, caller, a.ID, wait)
		if err != nil {
			return nil, nil, t.toolError("wait for the approval", err)
		}
		a = next
	}
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: summary(a)}}}, a, nil
}

// summary says what the agent should do next, in one paragraph.
func summary(a *ask.Approval) string {
	o := a.Outcome
	switch a.Status {
	case ask.StatusPending:
		return fmt.Sprintf("pending: approval %s waits for a reviewer (%s tier; %s). Do not act yet; call get_approval with id %q to wait for the decision.",
			a.ID, a.Tier, a.ReviewURL, a.ID)
	case ask.StatusApproved:
		params, _ := json.Marshal(o.Params)
		return fmt.Sprintf("approved: approval %s was approved by %s (rule %s). Execute the action with exactly these params: %s",
			a.ID, o.DecidedBy, o.Rule, params)
	case ask.StatusChangesRequested:
		return fmt.Sprintf("changes_requested: %s asks for changes to approval %s: %s. Revise the action and call request_approval with a new idempotency_key and revises %q.",
			o.DecidedBy, a.ID, o.Reason, a.ID)
	case ask.StatusRejected:
		by, reason := "the policy", ""
		if o != nil {
			by, reason = o.DecidedBy, o.Reason
		}
		return fmt.Sprintf("rejected: approval %s was rejected by %s: %s. Do not perform the action.", a.ID, by, reason)
	}
	return fmt.Sprintf("%s: approval %s ended without approval %s. Do not perform the action.", a.Status, a.ID, a.Error)
}

// toolError is a refused call as the agent reads it: the service's own
// message for a mistake it can fix, a plain one for the server's failures,
// which are logged.
func (t *tools) toolError(what string, err error) error {
	for _, known := range []error{ask.ErrBadRequest, ask.ErrTooLarge, ask.ErrIdempotencyConflict, ask.ErrRevision,
		ask.ErrNotRevisable, workflow.ErrForbidden, workflow.ErrInvalidInput, store.ErrNotFound, store.ErrInvalidInput} {
		if errors.Is(err, known) {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	t.logger.Error("mcp: "+what, "err", err)
	return fmt.Errorf("%s: the server failed; try again with the same idempotency_key", what)
}

func callerOf(req *mcp.CallToolRequest) (ask.Caller, error) {
	if req.Extra != nil && req.Extra.TokenInfo != nil {
		if c, ok := req.Extra.TokenInfo.Extra[callerKey].(ask.Caller); ok {
			return c, nil
		}
	}
	// Handler's bearer check runs before every call; this is a server
	// mounted without it.
	return ask.Caller{}, errors.New("no authenticated caller")
}

func waitOf(seconds *int) (time.Duration, error) {
	if seconds == nil {
		return DefaultWait, nil
	}
	if *seconds < 0 || time.Duration(*seconds)*time.Second > ask.MaxWait {
		return 0, fmt.Errorf("wait_seconds must be 0 to %d", int(ask.MaxWait.Seconds()))
	}
	return time.Duration(*seconds) * time.Second, nil
}

// inputSchema infers a tool's input schema from its arguments' type.
func inputSchema[T any]() *jsonschema.Schema {
	s, err := jsonschema.For[T](nil)
	if err != nil {
		panic(fmt.Sprintf("mcp input schema: %v", err)) // a programming error, found by any test
	}
	return s
}

// approvalSchema is the tools' output: the Approval of the API. Raw JSON
// (the agent's context) is any value, not the bytes it is held in.
var approvalSchema = func() *jsonschema.Schema {
	s, err := jsonschema.For[ask.Approval](&jsonschema.ForOptions{TypeSchemas: map[reflect.Type]*jsonschema.Schema{
		reflect.TypeFor[json.RawMessage](): {},
	}})
	if err != nil {
		panic(fmt.Sprintf("mcp output schema: %v", err))
	}
	return s
}()
