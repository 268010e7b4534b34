package mcpserver_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/ask"
	"github.com/countersign/countersign/internal/mcpserver"
	"github.com/countersign/countersign/internal/testapp"
)

// bearer adds a token to every request of the SDK's client.
type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

// connect opens an MCP session on the server with the SDK's own client.
func connect(t *testing.T, addr, token string) (*mcp.ClientSession, error) {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "countersign-test", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: addr + "/mcp",
		HTTPClient: &http.Client{Transport: bearer{token}}, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
	if err == nil {
		t.Cleanup(func() { _ = s.Close() })
	}
	return s, err
}

// call calls a tool and decodes its structured content as an Approval.
func call(t *testing.T, s *mcp.ClientSession, tool string, args map[string]any) (*mcp.CallToolResult, *ask.Approval) {
	t.Helper()
	res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: args})
	require.NoError(t, err)
	if res.IsError {
		return res, nil
	}
	raw, err := json.Marshal(res.StructuredContent)
	require.NoError(t, err)
	var a ask.Approval
	require.NoError(t, json.Unmarshal(raw, &a), "%s", raw)
	return res, &a
}

func text(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func TestMCP(t *testing.T) {
	t.Parallel()
	app := testapp.StartAgents(t)
	s, err := connect(t, app.Addr, app.AgentToken)
	require.NoError(t, err)

	t.Run("ListTools", func(t *testing.T) {
		res, err := s.ListTools(context.Background(), nil)
		require.NoError(t, err)
		tools := map[string]*mcp.Tool{}
		for _, tool := range res.Tools {
			tools[tool.Name] = tool
		}
		require.Len(t, tools, 2)
		req, get := tools["request_approval"], tools["get_approval"]
		require.NotNil(t, req)
		require.NotNil(t, get)
		require.False(t, req.Annotations.ReadOnlyHint)
		require.True(t, req.Annotations.IdempotentHint, "the same key returns the same approval")
		require.False(t, *req.Annotations.DestructiveHint)
		require.False(t, *req.Annotations.OpenWorldHint)
		require.True(t, get.Annotations.ReadOnlyHint)
		require.NotNil(t, req.OutputSchema)
		schema, _ := json.Marshal(req.InputSchema)
		require.Contains(t, string(schema), `"required":["idempotency_key","action"]`)
		require.Contains(t, string(schema), `"required":["kind","summary"]`, "only kind and summary of the action")
	})

	t.Run("ExplicitThenApproved", func(t *testing.T) {
		params := map[string]any{"to": "ada@example.com", "subject": "Your refund"}
		res, a := call(t, s, "request_approval", map[string]any{
			"idempotency_key": "mcp-explicit",
			"action":          map[string]any{"kind": "email.send", "summary": "Email Ada about her refund", "target": "ada@example.com", "params": params},
			"context":         map[string]any{"agent": "test", "tool_call_id": "call_1"},
			"wait_seconds":    0,
		})
		require.NotNil(t, a, text(res))
		require.Equal(t, ask.StatusPending, a.Status)
		require.Equal(t, "explicit", a.Tier)
		require.Equal(t, "outbound-email", a.Rule)
		require.Contains(t, text(res), "pending: approval "+a.ID)
		require.Contains(t, text(res), "get_approval")

		// The same key answers the same approval.
		_, again := call(t, s, "request_approval", map[string]any{
			"idempotency_key": "mcp-explicit",
			"action":          map[string]any{"kind": "email.send", "summary": "Email Ada about her refund", "target": "ada@example.com", "params": params},
			"context":         map[string]any{"agent": "test", "tool_call_id": "call_1"},
			"wait_seconds":    0,
		})
		require.Equal(t, a.ID, again.ID)

		// A reviewer approves through the API while get_approval waits.
		pending := app.WaitPending(t)
		require.Equal(t, "Email Ada about her refund", pending.Summary)
		decided := make(chan struct{})
		go func() {
			defer close(decided)
			time.Sleep(300 * time.Millisecond)
			app.Decide(t, pending, "approve", "", nil)
		}()
		t.Cleanup(func() { <-decided })
		start := time.Now()
		res, got := call(t, s, "get_approval", map[string]any{"id": a.ID, "wait_seconds": 20})
		require.NotNil(t, got, text(res))
		require.Equal(t, ask.StatusApproved, got.Status, text(res))
		require.Less(t, time.Since(start), 15*time.Second, "the long poll answers on the decision")
		require.Equal(t, "approve", got.Outcome.Verdict)
		require.Equal(t, "approver@example.com", got.Outcome.DecidedBy)
		require.Equal(t, params, got.Outcome.Params)
		require.Contains(t, text(res), "approved: approval "+a.ID)
		require.Contains(t, text(res), `"subject":"Your refund"`)
	})

	t.Run("AutoApprovedAtOnce", func(t *testing.T) {
		res, a := call(t, s, "request_approval", map[string]any{
			"idempotency_key": "mcp-auto",
			"action":          map[string]any{"kind": "read", "summary": "Read the order 1042", "params": map[string]any{"order": 1042}},
		})
		require.NotNil(t, a, text(res))
		require.Equal(t, ask.StatusApproved, a.Status)
		require.Equal(t, "auto", a.Tier)
		require.Equal(t, "read-only", a.Outcome.Rule)
		require.EqualValues(t, 1042, a.Outcome.Params["order"])
	})

	t.Run("ExactNumbers", func(t *testing.T) {
		res, a := call(t, s, "request_approval", map[string]any{
			"idempotency_key": "mcp-big",
			"action":          map[string]any{"kind": "read", "summary": "Read account", "params": map[string]any{"account": json.Number("12345678901234567891")}},
		})
		require.NotNil(t, a, text(res))
		require.Equal(t, ask.StatusApproved, a.Status)
		require.Contains(t, text(res), `{"account":12345678901234567891}`, "the params to execute, digit for digit")
	})

	t.Run("Refused", func(t *testing.T) {
		res, a := call(t, s, "request_approval", map[string]any{
			"idempotency_key": "mcp-bad", "action": map[string]any{"kind": "read", "summary": "x", "risk": "extreme"},
		})
		require.Nil(t, a)
		require.True(t, res.IsError)
		require.Contains(t, text(res), "risk must be low, medium or high")

		res, _ = call(t, s, "request_approval", map[string]any{"action": map[string]any{"kind": "read"}})
		require.True(t, res.IsError, "the schema requires the key and the summary")

		res, _ = call(t, s, "get_approval", map[string]any{"id": "00000000-0000-0000-0000-000000000000"})
		require.True(t, res.IsError)
		require.Contains(t, text(res), "not found")

		res, _ = call(t, s, "get_approval", map[string]any{"id": "x", "wait_seconds": 61})
		require.True(t, res.IsError)
		require.Contains(t, text(res), "wait_seconds must be 0 to 60")
	})
}

func TestMCPAuthentication(t *testing.T) {
	t.Parallel()
	app := testapp.StartAgents(t)
	post := func(token string) *http.Response {
		req, err := http.NewRequest(http.MethodPost, app.Addr+"/mcp",
			strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}

	t.Run("NoToken", func(t *testing.T) {
		resp := post("")
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		require.Equal(t, `Bearer scope="approvals:write"`, resp.Header.Get("WWW-Authenticate"))
		_, err := connect(t, app.Addr, "")
		require.Error(t, err)
	})
	t.Run("UnknownToken", func(t *testing.T) {
		resp := post("cs_00000000_" + strings.Repeat("0", 64))
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		require.NotEmpty(t, resp.Header.Get("WWW-Authenticate"))
	})
	t.Run("WithoutScope", func(t *testing.T) {
		resp := post(app.ReadOnlyToken)
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		_, err := connect(t, app.Addr, app.ReadOnlyToken)
		require.Error(t, err)
		_, err = connect(t, app.Addr, app.ApproverToken)
		require.Error(t, err, "a reviewer's decide token cannot file approvals")
	})
	t.Run("ViewerRefused", func(t *testing.T) {
		// The scope lets the call in; the user's role still decides, as for a person.
		ctx := context.Background()
		_, err := account.Create(ctx, app.Pool, "viewer@example.com", "Viewer", "viewer", "correct-horse-battery", "setup")
		require.NoError(t, err)
		_, secret, err := account.CreateToken(ctx, app.Pool, account.TokenParams{Email: "viewer@example.com", Name: "t",
			Scopes: []string{account.ScopeApprovalsWrite}, By: "setup"})
		require.NoError(t, err)
		s, err := connect(t, app.Addr, secret)
		require.NoError(t, err)
		res, a := call(t, s, "request_approval", map[string]any{
			"idempotency_key": "viewer", "action": map[string]any{"kind": "read", "summary": "Read"}})
		require.Nil(t, a)
		require.Contains(t, text(res), "viewers cannot file approvals")
	})
	t.Run("TooLarge", func(t *testing.T) {
		big := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"request_approval","arguments":{"pad":"` +
			strings.Repeat("x", mcpserver.MaxBody) + `"}}}`
		req, err := http.NewRequest(http.MethodPost, app.Addr+"/mcp", strings.NewReader(big))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+app.AgentToken)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	})
	t.Run("NoCookieNeeded", func(t *testing.T) {
		// The console's CSRF check would refuse a POST without its token.
		resp := post(app.AgentToken)
		require.Equal(t, http.StatusOK, resp.StatusCode)
	})
}
