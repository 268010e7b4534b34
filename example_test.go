package countersign_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/countersign/countersign"
)

// Invoice is the input of the examples' workflow.
type Invoice struct {
	ID     string  `json:"id"`
	Vendor string  `json:"vendor"`
	Amount float64 `json:"amount"`
}

// PayInvoice asks for approval of a payment and makes it once.
func PayInvoice(ctx context.Context, inv Invoice) (string, error) {
	d, err := countersign.RequestApproval(ctx, countersign.Action{
		Kind: "payment.send", Target: "vendor:" + inv.Vendor, Summary: fmt.Sprintf("Pay invoice %s, %.2f", inv.ID, inv.Amount),
		Params: map[string]any{"invoice": inv.ID, "amount": inv.Amount}, Risk: "high",
	})
	if err != nil {
		return "", err // also when the run now waits for a reviewer
	}
	return countersign.Effect(ctx, "send_payment", func(ctx context.Context, ec countersign.EffectContext) (string, error) {
		// Pay d.Params (a reviewer may have edited the amount); the bank
		// deduplicates on ec.Key.
		return fmt.Sprintf("paid %v of invoice %v", d.Params["amount"], d.Params["invoice"]), nil
	})
}

// A service's main: its workflows, then the whole command line.
func Example() {
	reg := countersign.NewRegistry()
	countersign.Register(reg, "pay_invoice", PayInvoice, countersign.Options{MaxSteps: 10})
	countersign.Main(reg) // ./service migrate, ./service serve, ./service run start …
}

// Run is Main with the arguments, streams and environment given, for tests;
// this prints what `run start --help` says about the registered workflows,
// which needs no database.
func ExampleRun() {
	reg := countersign.NewRegistry()
	countersign.Register(reg, "pay_invoice", PayInvoice, countersign.Options{
		Description: "Pay a vendor's invoice once a reviewer approves it.",
		Example:     Invoice{ID: "INV-7", Vendor: "acme", Amount: 99.5},
	})
	var stderr bytes.Buffer
	code := countersign.Run(context.Background(), []string{"run", "start", "--help"}, strings.NewReader(""), os.Stdout, &stderr, os.Getenv, reg)
	help, _, _ := strings.Cut(stderr.String(), "\n\n  -by")
	fmt.Println(help)
	fmt.Println("exit code", code)
	// Output:
	// Usage: countersign run start --workflow W --key K [--input JSON]
	//
	// Workflows:
	//   pay_invoice  Pay a vendor's invoice once a reviewer approves it.
	//       --input '{"id":"INV-7","vendor":"acme","amount":99.5}'
	// exit code 0
}

// A workflow's input arrives decoded from the run's JSON input; its result is
// stored as the run's output.
func ExampleRegister() {
	reg := countersign.NewRegistry()
	countersign.Register(reg, "pay_invoice", PayInvoice, countersign.Options{
		Description: "Pay a vendor's invoice once a reviewer approves it.",
		MaxSteps:    10,
		Example:     Invoice{ID: "INV-7", Vendor: "acme", Amount: 99.5},
	})
	countersign.Main(reg)
}

// A changed workflow is registered as a new version beside the old one:
// runs that started on version 1 (waiting for a reviewer, say) finish on
// version 1's code, new runs start on version 2. Remove version 1 when
// `countersign workflow list` shows no runs of it.
func ExampleOptions_version() {
	payV2 := func(ctx context.Context, inv Invoice) (string, error) {
		if _, err := countersign.Step(ctx, "check_vendor", func(context.Context) (bool, error) { return true, nil }); err != nil {
			return "", err
		}
		return PayInvoice(ctx, inv)
	}
	reg := countersign.NewRegistry()
	countersign.Register(reg, "pay_invoice", PayInvoice, countersign.Options{Version: 1})
	countersign.Register(reg, "pay_invoice", payV2, countersign.Options{Version: 2})
	countersign.Main(reg)
}

// A step's result is recorded: when the run is replayed, after a crash or a
// reviewer's decision, the lookup is not made again.
func ExampleStep() {
	lookUp := func(ctx context.Context, id string) (float64, error) {
		return countersign.Step(ctx, "look_up_balance", func(ctx context.Context) (float64, error) {
			return 1250.00, nil // read the ledger
		})
	}
	_ = lookUp
}

// A follow-up three days later, and a scraping service's callback: the run
// waits for both holding no worker.
func ExampleSleep() {
	followUp := func(ctx context.Context, email string) (string, error) {
		if err := countersign.Sleep(ctx, "three_days", 72*time.Hour); err != nil {
			return "", err // also when the run now sleeps
		}
		return countersign.Step(ctx, "follow_up", func(ctx context.Context) (string, error) { return "sent to " + email, nil })
	}
	_ = followUp
}

// The run resumes when POST /api/v1/runs/{id}/events/scraped delivers
// {"data": {"pages": 12}}, or gives up after an hour.
func ExampleWaitEvent() {
	scrape := func(ctx context.Context, url string) (int, error) {
		page, err := countersign.WaitEvent[struct{ Pages int }](ctx, "scraped", time.Hour)
		if errors.Is(err, countersign.ErrEventTimeout) {
			return 0, countersign.Fail("scrape_timeout", "the scraper never called back for "+url)
		}
		if err != nil {
			return 0, err // also when the run now waits
		}
		return page.Pages, nil
	}
	_ = scrape
}

// The decision says what to do: approved (with the parameters to apply, the
// reviewer's edit included), or sent back with feedback to propose again.
func ExampleRequestApproval() {
	refund := func(ctx context.Context, order string, amount float64) (map[string]any, error) {
		for round := 1; ; round++ {
			d, err := countersign.RequestApproval(ctx, countersign.Action{
				Kind: "refund.issue", Target: "order:" + order, Summary: fmt.Sprintf("Refund %.2f (round %d)", amount, round),
				Params: map[string]any{"order": order, "amount": amount}, Risk: "medium",
				Checks: []countersign.Check{{Name: "under 500", Passed: amount < 500}},
			})
			if err != nil {
				return nil, err
			}
			if d.Approved() {
				return d.Params, nil
			}
			if round == 3 {
				return nil, countersign.Fail("no_agreement", d.Reason)
			}
			amount /= 2 // d.ChangesRequested(): d.Reason says why
		}
	}
	_ = refund
}

// echoModel is a ModelProvider that answers every request with its input:
// plug a real client in the same way.
type echoModel struct{}

func (echoModel) Name() string { return "echo" }

func (echoModel) Complete(ctx context.Context, req countersign.ModelRequest) (*countersign.ModelResponse, error) {
	if !json.Valid(req.Input) {
		return nil, countersign.Permanent(fmt.Errorf("task %s: input is not JSON", req.Task))
	}
	return &countersign.ModelResponse{Content: req.Input, Model: "echo", Usage: countersign.Usage{TotalTokens: len(req.Input)}}, nil
}

// Generate calls the provider WithModel plugs in, and records the answer.
func ExampleWithModel() {
	type Summary struct {
		Text string `json:"text"`
	}
	summarize := func(ctx context.Context, in struct{ Text string }) (Summary, error) {
		input, _ := json.Marshal(map[string]string{"text": in.Text})
		return countersign.Generate[Summary](ctx, "summarize", countersign.ModelRequest{
			Task:     "summarize",
			Messages: []countersign.Message{{Role: "user", Content: "Summarize as JSON {text}: " + in.Text}},
			Input:    input,
		})
	}
	reg := countersign.NewRegistry()
	countersign.Register(reg, "summarize", summarize)
	countersign.Main(reg, countersign.WithModel(echoModel{}))
}

// A booking that is cancelled when the run fails, is rejected or is
// cancelled, and a flaky lookup with its own retry policy.
func ExampleCompensate() {
	type Booking struct {
		Ref string `json:"ref"`
	}
	r := countersign.NewRegistry()
	countersign.Register(r, "trip", func(ctx context.Context, city string) (string, error) {
		b, err := countersign.Effect(ctx, "book_hotel", func(ctx context.Context, ec countersign.EffectContext) (Booking, error) {
			return Booking{Ref: "H-" + ec.Key}, nil // the hotel deduplicates on ec.Key
		})
		if err != nil {
			return "", err
		}
		_, err = countersign.Step(ctx, "check_weather", func(ctx context.Context) (string, error) {
			return "", countersign.Error("rate_limited", "the weather service is busy")
		}, countersign.WithRetry(countersign.RetryPolicy{MaxAttempts: 3, InitialInterval: 2 * time.Second}))
		return b.Ref, err
	}, countersign.Options{Retry: countersign.RetryPolicy{MaxAttempts: 4, NonRetryable: []string{"card_declined"}}})
	countersign.Compensate(r, "trip", "book_hotel", func(ctx context.Context, ec countersign.EffectContext, b Booking) error {
		fmt.Println("cancel", b.Ref) // the hotel deduplicates on ec.Key, the undo's own
		return nil
	})
}
