package countersign_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign"
	"github.com/countersign/countersign/internal/testdb"
)

// countingModel answers every request with a fixed summary and counts the calls.
type countingModel struct{ calls atomic.Int32 }

func (m *countingModel) Name() string { return "counting" }

func (m *countingModel) Complete(_ context.Context, req countersign.ModelRequest) (*countersign.ModelResponse, error) {
	m.calls.Add(1)
	return &countersign.ModelResponse{Content: json.RawMessage(`{"text":"short: ` + req.Task + `"}`), Usage: countersign.Usage{TotalTokens: 7}}, nil
}

type note struct {
	Text string `json:"text"`
}

// TestRunServesTheRegistryWithTheModel runs serve through the public entry
// point and checks that its workers run the registry's workflow, whose
// Generate calls the provider WithModel gave, and that the run commands
// start and show it.
func TestRunServesTheRegistryWithTheModel(t *testing.T) {
	t.Parallel()
	model := &countingModel{}
	reg := countersign.NewRegistry()
	countersign.Register(reg, "summarize", func(ctx context.Context, n note) (string, error) {
		words, err := countersign.Step(ctx, "count_words", func(context.Context) (int, error) { return len(strings.Fields(n.Text)), nil })
		if err != nil {
			return "", err
		}
		s, err := countersign.Generate[note](ctx, "summarize", countersign.ModelRequest{Task: "summarize",
			Messages: []countersign.Message{{Role: "user", Content: n.Text}}})
		if err != nil {
			return "", err
		}
		return s.Text + " (" + countersign.RunID(ctx)[:8] + ", " + strings.Repeat("w", words) + ")", nil
	}, countersign.Options{MaxModelCalls: 1})

	env := map[string]string{"DATABASE_URL": testdb.New(t), "COUNTERSIGN_WORKERS": "2"}
	getenv := func(k string) string { return env[k] }
	cli := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		code := countersign.Run(t.Context(), args, strings.NewReader(""), &out, &errb, getenv, reg, countersign.WithModel(model))
		require.Equal(t, 0, code, "%v: %s", args, errb.String())
		return out.String()
	}

	ctx, stop := context.WithCancel(context.Background())
	served := make(chan int, 1)
	var serveLog bytes.Buffer
	go func() {
		served <- countersign.Run(ctx, []string{"serve", "--worker-only"}, strings.NewReader(""), &serveLog, &serveLog, getenv, reg, countersign.WithModel(model))
	}()
	t.Cleanup(func() {
		stop()
		select {
		case code := <-served:
			require.Equal(t, 0, code, "serve stops cleanly when its context ends")
		case <-time.After(60 * time.Second):
			t.Error("serve did not stop")
		}
	})

	id := strings.TrimSpace(cli("run", "start", "--workflow", "summarize", "--key", "n-1", "--input", `{"text":"three little words"}`))
	require.Len(t, id, 36)
	var shown struct {
		Status string `json:"status"`
		Output string `json:"output"`
	}
	// Eventually polls on a goroutine of its own, where require may not fail the test.
	require.Eventually(t, func() bool {
		var out bytes.Buffer
		code := countersign.Run(t.Context(), []string{"run", "show", id}, strings.NewReader(""), &out, &out, getenv, reg)
		return code == 0 && json.Unmarshal(out.Bytes(), &shown) == nil && shown.Status == "completed"
	}, 30*time.Second, 100*time.Millisecond)
	require.Equal(t, "short: summarize ("+id[:8]+", www)", shown.Output)
	require.Equal(t, int32(1), model.calls.Load())
}
