package countersigntest_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/countersign/countersign"
	"github.com/countersign/countersign/countersigntest"
	"github.com/countersign/countersign/vocab"
)

// Triage asks the model for a reply and a reviewer for approval, then sends it.
func Triage(ctx context.Context, ticket string) (string, error) {
	p, err := countersign.Generate[struct {
		Reply string `json:"reply"`
	}](ctx, "draft_reply", countersign.ModelRequest{Task: "draft"})
	if err != nil {
		return "", err
	}
	d, err := countersign.RequestApproval(ctx, countersign.Action{Kind: "reply.send", Summary: "Reply to " + ticket,
		Params: map[string]any{"text": p.Reply}})
	if err != nil {
		return "", err
	}
	return countersign.Effect(ctx, "send_reply", func(ctx context.Context, ec countersign.EffectContext) (string, error) {
		return fmt.Sprintf("sent %q", d.Params["text"]), nil // the mail API deduplicates on ec.Key
	})
}

// A workflow run in memory with a scripted model and reviewer; its history,
// saved, replays against the code as a real run's export does. In a test,
// use countersigntest.Run and countersigntest.ReplayFile, which fail t.
func Example() {
	reg := countersign.NewRegistry()
	countersign.Register(reg, "triage", Triage)

	run, err := countersigntest.Execute(reg, "triage", "T-7", countersigntest.Script{
		Model:     map[string]any{"draft_reply": map[string]string{"reply": "Sorry, a refund is on its way."}},
		Decisions: []countersign.Decision{{Verdict: vocab.VerdictApprove, Actor: "rev@example.com"}},
	})
	if err != nil || run.Err != nil {
		fmt.Println(err, run.Err)
		return
	}
	fmt.Println(string(run.Output))

	dir, _ := os.MkdirTemp("", "replay")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "triage.json") // or a `countersign run export` of a real run
	if err := run.Save(path); err != nil {
		fmt.Println(err)
		return
	}
	res, err := countersigntest.Check(reg, path)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res)
	// Output:
	// "sent \"Sorry, a refund is on its way.\""
	// deterministic: 3 steps
}
