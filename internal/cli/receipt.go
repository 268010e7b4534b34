package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/receipt"
)

// maxReceiptInput bounds what receipt verify reads: a receipt, an Approval
// holding one, or a keys document is a few KiB.
const maxReceiptInput = 1 << 20

// cmdReceiptVerify checks a receipt offline against a keys document, or
// against the keys a server publishes. Exit 0 valid, 1 invalid, 2 usage.
func cmdReceiptVerify(e *env, args []string) error {
	fs, _ := e.flags("receipt verify", "receipt verify [--keys FILE | --url BASE_URL] [FILE|-]\n\n"+
		"Reads a receipt, or an Approval JSON holding one in \"receipt\", from FILE or stdin, checks its\n"+
		"signature and prints its claims and \"valid\" (exit 0); an invalid receipt prints one line (exit 1).\n"+
		"Keys come from --keys (what countersign receipt keys prints), or from --url (default\n"+
		"$COUNTERSIGN_URL) at /.well-known/countersign/receipt-keys.")
	keysFile := fs.String("keys", "", "a keys document (the keys endpoint's JSON), for checking offline")
	baseURL := fs.String("url", "", "the server whose published keys to check against (default $COUNTERSIGN_URL)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usagef("expected at most one receipt file, got %d arguments", fs.NArg())
	}
	if *keysFile != "" && *baseURL != "" {
		return usagef("give --keys or --url, not both")
	}
	if *keysFile == "" && *baseURL == "" {
		*baseURL = strings.TrimSpace(e.getenv("COUNTERSIGN_URL"))
		if *baseURL == "" {
			return usagef("give --keys FILE or --url BASE_URL (or set COUNTERSIGN_URL)")
		}
	}
	raw, err := readInput(e, fs.Arg(0))
	if err != nil {
		return err
	}
	var keys receipt.KeySet
	if *keysFile != "" {
		kraw, err := readFile(*keysFile)
		if err != nil {
			return usagef("--keys: %v", err)
		}
		if err := json.Unmarshal(kraw, &keys); err != nil {
			return usagef("--keys %s is not a keys document: %v", *keysFile, err)
		}
	} else if keys, err = fetchKeys(e.ctx, *baseURL); err != nil {
		return usageError{err}
	}
	r, err := parseReceipt(raw)
	if err != nil {
		return err
	}
	claims, err := receipt.Verify(r, keys.Keys)
	if err != nil {
		return fmt.Errorf("invalid: %w", err)
	}
	out, _ := json.MarshalIndent(claims, "", "  ")
	fmt.Fprintf(e.stdout, "%s\nvalid\n", out)
	return nil
}

// readInput reads the receipt from a file, or stdin for "" and "-".
func readInput(e *env, name string) ([]byte, error) {
	if name == "" || name == "-" {
		raw, err := io.ReadAll(io.LimitReader(e.stdin, maxReceiptInput+1))
		if err != nil {
			return nil, usagef("read stdin: %v", err)
		}
		if len(raw) > maxReceiptInput {
			return nil, usagef("stdin holds more than %d bytes: not a receipt", maxReceiptInput)
		}
		return raw, nil
	}
	raw, err := readFile(name)
	if err != nil {
		return nil, usageError{err}
	}
	return raw, nil
}

func readFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxReceiptInput+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > maxReceiptInput {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxReceiptInput)
	}
	return raw, nil
}

// parseReceipt reads a receipt, or the "receipt" of an Approval. What is not
// one is an invalid receipt (exit 1), not a usage mistake.
func parseReceipt(raw []byte) (receipt.Receipt, error) {
	var approval struct {
		Receipt *receipt.Receipt `json:"receipt"`
	}
	var r receipt.Receipt
	if err := json.Unmarshal(raw, &approval); err != nil {
		return r, fmt.Errorf("invalid: not a receipt: %v: %w", err, receipt.ErrMalformed)
	}
	if approval.Receipt != nil {
		return *approval.Receipt, nil
	}
	if err := json.Unmarshal(raw, &r); err != nil || r.Payload == "" {
		return r, fmt.Errorf("invalid: no receipt in the input (an undecided approval has none): %w", receipt.ErrMalformed)
	}
	return r, nil
}

// fetchKeys reads the keys a server publishes. Redirects are not followed:
// the keys are trusted for where they were asked, not where they were sent.
func fetchKeys(ctx context.Context, base string) (receipt.KeySet, error) {
	var keys receipt.KeySet
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return keys, fmt.Errorf("--url must be an http:// or https:// URL, got %q", base)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	url := strings.TrimSuffix(base, "/") + "/.well-known/countersign/receipt-keys"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return keys, fmt.Errorf("--url: %w", err)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return keys, fmt.Errorf("fetch keys: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxReceiptInput))
	if err != nil {
		return keys, fmt.Errorf("fetch keys from %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return keys, fmt.Errorf("fetch keys from %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&keys); err != nil {
		return keys, fmt.Errorf("keys from %s are not a keys document: %w", url, err)
	}
	return keys, nil
}

// cmdReceiptKeys prints the keys document from the database: every key that
// signs or signed receipts, to save for checking offline.
func cmdReceiptKeys(e *env, args []string) error {
	fs, dbURL := e.flags("receipt keys", "receipt keys [--database-url URL]\n\n"+
		"Prints the public receipt keys as JSON (the body of GET /api/v1/receipts/keys), making the\n"+
		"signing key first if there is none, and recording the public half of COUNTERSIGN_RECEIPT_KEY.")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	cfg, err := e.config(*dbURL)
	if err != nil {
		return err
	}
	keys, err := withDBV(e, cfg.DatabaseURL, func(pool *pgxpool.Pool) ([]receipt.PublicKey, error) {
		signer, err := app.NewSigner(pool, cfg)
		if err != nil {
			return nil, usageError{err}
		}
		return signer.Keys(e.ctx)
	})
	if err != nil {
		return err
	}
	out, _ := json.MarshalIndent(receipt.KeySet{Keys: keys}, "", "  ")
	fmt.Fprintf(e.stdout, "%s\n", out)
	return nil
}
