// Package ai talks to language models: chat completion with structured JSON
// output and token usage. It imports nothing of Countersign's.
package ai

import (
	"context"
	"encoding/json"
	"errors"
)

// Message is one chat message.
type Message struct {
	Role    string `json:"role"` // system, user or assistant
	Content string `json:"content"`
}

// Request asks a model for a JSON object.
type Request struct {
	// Task names what is asked ("support_triage.propose"); the offline provider
	// uses it to pick its generator, remote providers ignore it.
	Task     string    `json:"task"`
	Messages []Message `json:"messages"`
	// Input is the structured input behind the messages; the offline provider
	// computes its answer from it.
	Input     json.RawMessage `json:"input,omitempty"`
	MaxTokens int             `json:"max_tokens,omitempty"`
}

// Usage counts the tokens a call used.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// Response is a model's answer: Content is always a JSON object.
type Response struct {
	Content json.RawMessage `json:"content"`
	Usage   Usage           `json:"usage"`
	Model   string          `json:"model"`
}

// Provider is a chat-completion backend.
type Provider interface {
	// Complete returns the model's JSON answer. Errors wrapping ErrPermanent
	// will not succeed on retry (bad request, bad credentials, unknown model).
	Complete(ctx context.Context, req Request) (*Response, error)
	Name() string
}

// ErrPermanent marks an error that retrying will not fix.
var ErrPermanent = errors.New("permanent model error")

// ErrMalformed is returned when the model's output is not a JSON object.
var ErrMalformed = errors.New("model output is not a JSON object")
