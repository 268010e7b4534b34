package ai

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
)

// GenerateFunc computes an offline answer from a request's structured input.
type GenerateFunc func(input json.RawMessage) (any, error)

// Offline is a deterministic provider: the same request always gets the same
// answer and the same token count, with no network. The demo and the tests use
// it; generators are registered per task.
type Offline struct {
	mu   sync.RWMutex
	gens map[string]GenerateFunc
}

// NewOffline returns an offline provider with no generators.
func NewOffline() *Offline { return &Offline{gens: map[string]GenerateFunc{}} }

// Handle registers the generator for a task.
func (o *Offline) Handle(task string, fn GenerateFunc) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.gens[task] = fn
}

// Name implements Provider.
func (o *Offline) Name() string { return "offline" }

// Complete implements Provider. An unknown task is a permanent error.
func (o *Offline) Complete(ctx context.Context, req Request) (*Response, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o.mu.RLock()
	gen, ok := o.gens[req.Task]
	o.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: offline provider has no generator for task %q", ErrPermanent, req.Task)
	}
	out, err := gen(req.Input)
	if err != nil {
		return nil, fmt.Errorf("offline %s: %w", req.Task, err)
	}
	content, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("offline %s: encode: %w", req.Task, err)
	}
	prompt := 0
	for _, m := range req.Messages {
		prompt += len(m.Content)
	}
	prompt = (prompt+len(req.Input))/4 + 8
	completion := len(content)/4 + 1
	return &Response{
		Content: content,
		Usage:   Usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion},
		Model:   "offline",
	}, nil
}
