package countersign

import "github.com/countersign/countersign/internal/ai"

// ModelProvider is a chat-completion backend that [Generate] calls; plug in
// your own client with [WithModel]. Complete returns the model's answer, a
// JSON object, and the tokens it used. Return an error made with [Permanent]
// when a retry cannot succeed (bad request, bad credentials, unknown model);
// any other error is retried with backoff. Name identifies the provider.
//
// Without WithModel, the provider is the one the environment configures:
// COUNTERSIGN_MODEL_PROVIDER=openai (with COUNTERSIGN_MODEL and
// COUNTERSIGN_MODEL_BASE_URL) for any OpenAI-compatible server, else an
// offline provider that answers no task.
type ModelProvider = ai.Provider

// ModelRequest asks a model for a JSON object. Task names what is asked
// ("refund.classify"); Messages are the chat; Input is the structured input
// behind them, for providers that compute answers from it (a test double).
type ModelRequest = ai.Request

// ModelResponse is a model's answer: Content is one JSON object.
type ModelResponse = ai.Response

// Message is one chat message; Role is system, user or assistant.
type Message = ai.Message

// Usage counts the tokens a model call used; TotalTokens counts against the
// run's token budget.
type Usage = ai.Usage
