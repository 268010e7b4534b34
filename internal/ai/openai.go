package ai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/openai/openai-go"
	"github.com/openai/openai-go/option"
)

// OpenAIConfig configures an OpenAI-compatible endpoint: OpenAI itself,
// Ollama, vLLM, llama.cpp's server, LM Studio.
type OpenAIConfig struct {
	BaseURL    string        // e.g. http://127.0.0.1:11434/v1 for Ollama
	APIKey     string        // may be empty for local servers
	Model      string        // e.g. gpt-4o-mini, llama3.1
	Timeout    time.Duration // per attempt
	MaxRetries int           // retries of 429s, 5xx and connection errors inside one step
}

// OpenAI is a provider for any server that speaks the chat-completions API.
type OpenAI struct {
	client openai.Client
	model  string
}

// NewOpenAI returns a provider for cfg. It makes no request.
func NewOpenAI(cfg OpenAIConfig) (*OpenAI, error) {
	if cfg.Model == "" {
		return nil, errors.New("openai provider: a model name is required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	opts := []option.RequestOption{
		option.WithMaxRetries(cfg.MaxRetries),
		option.WithRequestTimeout(cfg.Timeout),
		option.WithAPIKey(cfg.APIKey),
	}
	if cfg.BaseURL != "" {
		opts = append(opts, option.WithBaseURL(strings.TrimRight(cfg.BaseURL, "/")+"/"))
	}
	return &OpenAI{client: openai.NewClient(opts...), model: cfg.Model}, nil
}

// Name implements Provider.
func (o *OpenAI) Name() string { return "openai:" + o.model }

// Complete implements Provider: it asks for a JSON object and checks that the
// answer is one.
func (o *OpenAI) Complete(ctx context.Context, req Request) (*Response, error) {
	msgs := make([]openai.ChatCompletionMessageParamUnion, 0, len(req.Messages))
	for _, m := range req.Messages {
		switch m.Role {
		case "system":
			msgs = append(msgs, openai.SystemMessage(m.Content))
		case "assistant":
			msgs = append(msgs, openai.AssistantMessage(m.Content))
		default:
			msgs = append(msgs, openai.UserMessage(m.Content))
		}
	}
	params := openai.ChatCompletionNewParams{
		Model:    o.model,
		Messages: msgs,
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{
			OfJSONObject: &openai.ResponseFormatJSONObjectParam{},
		},
	}
	if req.MaxTokens > 0 {
		params.MaxTokens = openai.Int(int64(req.MaxTokens))
	}
	resp, err := o.client.Chat.Completions.New(ctx, params)
	if err != nil {
		var apiErr *openai.Error
		if errors.As(err, &apiErr) {
			switch apiErr.StatusCode {
			case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusUnprocessableEntity:
				return nil, fmt.Errorf("%w: %s: HTTP %d: %s", ErrPermanent, o.Name(), apiErr.StatusCode, apiErr.Message)
			}
			return nil, fmt.Errorf("%s: HTTP %d: %s", o.Name(), apiErr.StatusCode, apiErr.Message)
		}
		return nil, fmt.Errorf("%s: %w", o.Name(), err)
	}
	usage := Usage{
		PromptTokens:     int(resp.Usage.PromptTokens),
		CompletionTokens: int(resp.Usage.CompletionTokens),
		TotalTokens:      int(resp.Usage.TotalTokens),
	}
	if len(resp.Choices) == 0 {
		return &Response{Usage: usage, Model: resp.Model}, fmt.Errorf("%w: no choices returned", ErrMalformed)
	}
	content := strings.TrimSpace(resp.Choices[0].Message.Content)
	// Some local servers wrap JSON in a code fence despite the response format.
	content = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(content, "```json"), "```"), "```")
	content = strings.TrimSpace(content)
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(content), &obj); err != nil {
		return &Response{Usage: usage, Model: resp.Model}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return &Response{Content: json.RawMessage(content), Usage: usage, Model: resp.Model}, nil
}
