package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/uuid"

	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
)

// cmdRunSignal delivers an event to a run (Engine.Signal), as the API's
// POST /api/v1/runs/{id}/events/{name} does.
func cmdRunSignal(e *env, args []string) error {
	fs, dbURL := e.flags("run signal", "run signal RUN NAME [--data JSON|-] [--key KEY] [--by NAME]\n"+
		"Delivers the event NAME to the run: a run waiting for it (WaitEvent) resumes; otherwise it is kept\n"+
		"until the run's wait of that name. The same --key again changes nothing and prints the same event.")
	data := fs.String("data", "null", "the event's payload as JSON, or - to read it from stdin")
	key := fs.String("key", "", "idempotency key: a repeat with the same key is a no-op (default: a new one)")
	by := fs.String("by", "cli", "who sends the event (recorded in the audit log)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usagef("expected two arguments, the run id and the event name")
	}
	id, name := strings.TrimSpace(fs.Arg(0)), fs.Arg(1)
	if _, err := uuid.Parse(id); err != nil {
		return usagef("the run id must be a uuid, got %q", id)
	}
	payload := []byte(*data)
	if *data == "-" {
		raw, err := io.ReadAll(io.LimitReader(e.stdin, workflow.MaxEventPayload+1))
		if err != nil {
			return usagef("read stdin: %v", err)
		}
		payload = raw
	}
	if strings.TrimSpace(string(payload)) == "" {
		payload = []byte("null")
	}
	if !json.Valid(payload) {
		return usagef("--data is not valid JSON")
	}
	var ev *store.Event
	var created bool
	err := e.withEngine(*dbURL, func(a *app.App) (err error) {
		ev, created, err = a.Engine.Signal(e.ctx, workflow.SignalParams{RunID: id, Name: name, Key: *key,
			Payload: json.RawMessage(payload), Actor: *by})
		return err
	})
	switch {
	case errors.Is(err, workflow.ErrNotFound):
		return fmt.Errorf("no run %s", id)
	case errors.Is(err, workflow.ErrInvalidInput):
		return usageError{err}
	case err != nil:
		return err
	}
	if !created {
		fmt.Fprintf(e.stderr, "event %d was already delivered with key %q; nothing changed\n", ev.ID, ev.IdempotencyKey)
	}
	out, err := json.MarshalIndent(ev, "", "  ")
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	fmt.Fprintln(e.stdout, string(out))
	return nil
}
