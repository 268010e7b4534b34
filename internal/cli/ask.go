package cli

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/countersign/countersign/internal/askclient"
)

// exitPending is ask's answer when the approval is still pending at
// --timeout: neither approved (0) nor refused (1), so that a hook can tell
// "not yet" from "no".
const exitPending = 3

// maxAskInput bounds the action read from stdin; the server refuses bigger
// bodies anyway, and a hook that pipes a huge file by mistake should hear it
// at once.
const maxAskInput = 1 << 20

const askUsage = `ask [--url URL] [--token TOKEN] [--timeout 5m] [--key K] [--callback URL] [--revises ID]
       [--context k=v ...] [--kind K --summary S [--target T] [--param k=v|k:=JSON ...]] < action.json

Files an action with the approvals API (POST /api/v1/approvals) and waits up
to --timeout for its outcome, long-polling. The action is JSON on stdin
({"kind": ..., "summary": ..., "target": ..., "params": {...}, "risk": ...}),
or built from --kind, --summary, --target and --param (k=v for a string,
k:=JSON for a number, boolean, list or object: --param amount:=42). The last
answer, the Approval as JSON, is printed on stdout.

Exit codes:
  0  approved (the parameters to execute are outcome.params)
  1  rejected, changes requested, cancelled or failed
  3  still pending when --timeout passed (run again with the same --key to go on waiting)
  2  a usage, input, authentication or connection error: nothing was decided

Environment: COUNTERSIGN_URL, COUNTERSIGN_TOKEN (a token with the approvals:write scope).`

// paramsFlag collects k=v (a string) and k:=JSON (any JSON value, as
// httpie spells it): a value is never guessed to be a number, since a
// commit hash of digits must stay a string.
type paramsFlag map[string]json.RawMessage

func (p paramsFlag) String() string { return "" }
func (p paramsFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" || k == ":" {
		return fmt.Errorf("want k=v or k:=JSON, not %q", v)
	}
	if name, typed := strings.CutSuffix(k, ":"); typed {
		if !json.Valid([]byte(val)) {
			return fmt.Errorf("%s:= wants a JSON value, not %q", name, val)
		}
		p[name] = json.RawMessage(val)
		return nil
	}
	b, _ := json.Marshal(val) // a string always encodes
	p[k] = b
	return nil
}

func cmdAsk(e *env, args []string) error {
	fs := e.clientFlags("ask", askUsage)
	base := fs.String("url", "", "the server's base URL (default $COUNTERSIGN_URL)")
	token := fs.String("token", "", "an API token with the approvals:write scope (default $COUNTERSIGN_TOKEN)")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for a decision; 0 files and answers at once")
	key := fs.String("key", "", "the idempotency key: the same key returns the same approval (default: a new random key)")
	callback := fs.String("callback", "", "a URL the server POSTs the decided approval to, signed")
	revises := fs.String("revises", "", "the id of the approval whose changes this action answers")
	kind := fs.String("kind", "", "the action's kind, e.g. deploy (instead of JSON on stdin)")
	summary := fs.String("summary", "", "what the action does, in one line (with --kind)")
	target := fs.String("target", "", "what the action acts on (with --kind)")
	params := paramsFlag{}
	fs.Var(params, "param", "a parameter of the action, k=v or k:=JSON; repeat for more (with --kind)")
	actx := paramsFlag{}
	fs.Var(actx, "context", "free-form context the reviewer sees (agent, session, tool_call_id), k=v or k:=JSON; repeat for more")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *base == "" {
		*base = e.getenv("COUNTERSIGN_URL")
	}
	if *token == "" {
		*token = e.getenv("COUNTERSIGN_TOKEN")
	}
	switch u, err := url.Parse(*base); {
	case *base == "":
		return usagef("no server: give --url or set COUNTERSIGN_URL")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return usagef("--url must be an http(s) URL such as https://countersign.example.com, not %q", *base)
	}
	if *token == "" {
		return usagef("no token: give --token or set COUNTERSIGN_TOKEN (countersign token create --scope approvals:write)")
	}
	if *timeout < 0 {
		return usagef("--timeout must not be negative")
	}
	action, err := askAction(e.stdin, *kind, *summary, *target, params)
	if err != nil {
		return usageError{err}
	}
	if *key == "" {
		*key = newAskKey()
	}
	if len(*key) > 200 {
		return usagef("--key is at most 200 characters")
	}

	req := askclient.Request{IdempotencyKey: *key, Action: action, CallbackURL: *callback, Revises: *revises}
	if len(actx) > 0 {
		req.Context, _ = json.Marshal(actx) // raw JSON values always encode
	}
	c := askclient.New(*base, *token)
	a, err := c.Submit(e.ctx, req)
	if err != nil {
		return usageError{askErr("file the approval", err)}
	}
	if !a.Decided() {
		fmt.Fprintf(e.stderr, "countersign ask: approval %s is pending (%s tier); waiting up to %s\n", a.ID, a.Tier, *timeout)
	}
	a, err = c.Wait(e.ctx, a, *timeout)
	if err != nil {
		return usageError{askErr("wait for approval "+a.ID, err)}
	}
	if _, err := e.stdout.Write(append(a.Raw, '\n')); err != nil {
		return usageError{err}
	}
	return askOutcome(a)
}

// askAction returns the action from the flags, or else from stdin, checked
// to be one JSON object.
func askAction(stdin io.Reader, kind, summary, target string, params paramsFlag) (json.RawMessage, error) {
	if kind != "" || summary != "" || target != "" || len(params) > 0 {
		if kind == "" || summary == "" {
			return nil, errors.New("--kind and --summary are both needed to build an action from flags")
		}
		return json.Marshal(map[string]any{"kind": kind, "summary": summary, "target": target, "params": params})
	}
	raw, err := io.ReadAll(io.LimitReader(stdin, maxAskInput+1))
	if err != nil {
		return nil, fmt.Errorf("read the action from stdin: %w", err)
	}
	if len(raw) > maxAskInput {
		return nil, fmt.Errorf("the action on stdin is over %d bytes", maxAskInput)
	}
	var obj map[string]json.RawMessage
	if len(strings.TrimSpace(string(raw))) == 0 {
		return nil, errors.New("no action: pipe its JSON on stdin or give --kind and --summary")
	}
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil, errors.New(`the action on stdin is not a JSON object (want {"kind": ..., "summary": ..., "params": {...}})`)
	}
	return raw, nil
}

// askOutcome turns the approval's status into ask's exit code.
func askOutcome(a *askclient.Approval) error {
	switch a.Status {
	case askclient.StatusApproved:
		return nil
	case askclient.StatusPending:
		return exitError{exitPending, fmt.Errorf("approval %s is still pending", a.ID)}
	}
	msg := fmt.Sprintf("approval %s is %s", a.ID, a.Status)
	if o := a.Outcome; o != nil {
		if o.DecidedBy != "" {
			msg += " by " + o.DecidedBy
		}
		if o.Reason != "" {
			msg += ": " + o.Reason
		}
	}
	return exitError{exitFail, errors.New(msg)}
}

// askErr says what failed in one line: the API's own words for an answer it
// refused, the cause for a connection that failed.
func askErr(what string, err error) error {
	var apiErr *askclient.APIError
	if errors.As(err, &apiErr) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: cannot reach the server: %w", what, err)
}

func newAskKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "ask_" + hex.EncodeToString(b)
}
