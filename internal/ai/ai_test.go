package ai

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeServer speaks the chat-completions protocol; answer decides each reply.
func fakeServer(t *testing.T, answer func(n int, w http.ResponseWriter, body map[string]any)) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "/v1/chat/completions", r.URL.Path)
		require.Equal(t, "Bearer sk-test", r.Header.Get("Authorization"))
		var body map[string]any
		require.NoError(t, json.NewDecoder(r.Body).Decode(&body))
		w.Header().Set("Content-Type", "application/json")
		answer(int(calls.Add(1)), w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

func completion(content string) map[string]any {
	return map[string]any{
		"id": "c1", "object": "chat.completion", "created": 1, "model": "test-model",
		"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
			"message": map[string]any{"role": "assistant", "content": content}}},
		"usage": map[string]any{"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20},
	}
}

func provider(t *testing.T, url string, timeout time.Duration) *OpenAI {
	t.Helper()
	p, err := NewOpenAI(OpenAIConfig{BaseURL: url + "/v1", APIKey: "sk-test", Model: "test-model", Timeout: timeout, MaxRetries: 2})
	require.NoError(t, err)
	return p
}

var req = Request{Task: "t", Messages: []Message{{Role: "system", Content: "Answer in JSON."}, {Role: "user", Content: "hi"}}}

func TestOpenAI(t *testing.T) {
	t.Parallel()
	t.Run("Success", func(t *testing.T) {
		srv, _ := fakeServer(t, func(_ int, w http.ResponseWriter, body map[string]any) {
			require.Equal(t, "test-model", body["model"])
			require.Equal(t, map[string]any{"type": "json_object"}, body["response_format"])
			require.Len(t, body["messages"], 2)
			_ = json.NewEncoder(w).Encode(completion(`{"answer": 42}`))
		})
		resp, err := provider(t, srv.URL, 5*time.Second).Complete(context.Background(), req)
		require.NoError(t, err)
		require.JSONEq(t, `{"answer":42}`, string(resp.Content))
		require.Equal(t, Usage{PromptTokens: 12, CompletionTokens: 8, TotalTokens: 20}, resp.Usage)
	})
	t.Run("RetriesServerErrors", func(t *testing.T) {
		srv, calls := fakeServer(t, func(n int, w http.ResponseWriter, _ map[string]any) {
			if n < 3 {
				w.Header().Set("Retry-After-Ms", "1")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte(`{"error":{"message":"overloaded"}}`))
				return
			}
			_ = json.NewEncoder(w).Encode(completion(`{"ok": true}`))
		})
		resp, err := provider(t, srv.URL, 5*time.Second).Complete(context.Background(), req)
		require.NoError(t, err)
		require.JSONEq(t, `{"ok":true}`, string(resp.Content))
		require.EqualValues(t, 3, calls.Load())
	})
	t.Run("ClientErrorIsPermanent", func(t *testing.T) {
		srv, calls := fakeServer(t, func(_ int, w http.ResponseWriter, _ map[string]any) {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":{"message":"bad key","type":"invalid_request_error"}}`))
		})
		_, err := provider(t, srv.URL, 5*time.Second).Complete(context.Background(), req)
		require.ErrorIs(t, err, ErrPermanent)
		require.ErrorContains(t, err, "401")
		require.EqualValues(t, 1, calls.Load(), "a 401 is not retried")
	})
	t.Run("Timeout", func(t *testing.T) {
		srv, _ := fakeServer(t, func(_ int, w http.ResponseWriter, _ map[string]any) {
			time.Sleep(300 * time.Millisecond)
			_ = json.NewEncoder(w).Encode(completion(`{}`))
		})
		start := time.Now()
		_, err := provider(t, srv.URL, 50*time.Millisecond).Complete(context.Background(), req)
		require.Error(t, err)
		require.False(t, errors.Is(err, ErrPermanent), "a timeout may succeed on retry")
		require.Less(t, time.Since(start), 3*time.Second)
	})
	t.Run("MalformedOutput", func(t *testing.T) {
		srv, _ := fakeServer(t, func(_ int, w http.ResponseWriter, _ map[string]any) {
			_ = json.NewEncoder(w).Encode(completion(`Sure! Here is the JSON: {"a": 1`))
		})
		resp, err := provider(t, srv.URL, 5*time.Second).Complete(context.Background(), req)
		require.ErrorIs(t, err, ErrMalformed)
		require.Equal(t, 20, resp.Usage.TotalTokens, "the tokens of a malformed answer are still counted")
	})
	t.Run("FencedJSONIsAccepted", func(t *testing.T) {
		srv, _ := fakeServer(t, func(_ int, w http.ResponseWriter, _ map[string]any) {
			_ = json.NewEncoder(w).Encode(completion("```json\n{\"a\": 1}\n```"))
		})
		resp, err := provider(t, srv.URL, 5*time.Second).Complete(context.Background(), req)
		require.NoError(t, err)
		require.JSONEq(t, `{"a":1}`, string(resp.Content))
	})
}

func TestOffline(t *testing.T) {
	t.Parallel()
	o := NewOffline()
	o.Handle("echo", func(in json.RawMessage) (any, error) { return map[string]json.RawMessage{"in": in}, nil })
	r := Request{Task: "echo", Input: json.RawMessage(`{"x":1}`)}
	a, err := o.Complete(context.Background(), r)
	require.NoError(t, err)
	b, err := o.Complete(context.Background(), r)
	require.NoError(t, err)
	require.Equal(t, a, b, "deterministic")
	require.Positive(t, a.Usage.TotalTokens)
	_, err = o.Complete(context.Background(), Request{Task: "unknown"})
	require.ErrorIs(t, err, ErrPermanent)
}
