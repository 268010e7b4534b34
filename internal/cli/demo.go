package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
)

func cmdDemo(e *env, args []string) error {
	fs, dbURL := e.flags("demo", "demo [--every 10s] [--addr :8080]")
	every := fs.Duration("every", 10*time.Second, "start a demo run this often")
	addr := fs.String("addr", "", "listen address (default $COUNTERSIGN_ADDR or :8080)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *every < 10*time.Millisecond {
		return usagef("--every must be at least 10ms")
	}
	cfg, err := e.serveConfig(*dbURL, *addr, 0)
	if err != nil {
		return err
	}
	if err := migrate(e, cfg); err != nil {
		return err
	}
	if err := seedPolicy(e, cfg); err != nil {
		return err
	}
	if err := seedUsers(e, cfg); err != nil {
		return err
	}
	// The demo listens itself so that it can print the address it really got
	// (and its port when --addr asks for :0) before the log lines start.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	defer ln.Close()
	fmt.Fprintf(e.stdout, "open %s and sign in as admin@example.com (or approver@, approver2@, reviewer@, viewer@example.com), password %q\n",
		consoleURL(cfg, ln.Addr()), DemoPassword)
	return serve(e, cfg, app.Options{Web: true, Worker: true, Demo: true, Listener: ln}, func(ctx context.Context, a *app.App) {
		go demo.DecideAsColleagues(ctx, a.Pool, a.Engine, demo.Patience, 20*time.Second, e.logger())
		demo.Stream(ctx, a.Engine, func(ctx context.Context) (int, error) { return waiting(ctx, a.Pool) }, *every, e.logger())
	})
}

// waiting counts the pending requests of every tier (each count stops at
// store.InboxCountCap, far above what the demo needs to know).
func waiting(ctx context.Context, db store.DBTX) (int, error) {
	counts, err := store.RequestCountPending(ctx, db)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range counts {
		n += c.Count
	}
	return n, nil
}

// consoleURL is the address a browser on this machine opens: an unspecified
// host (":8080", "0.0.0.0") is reached as localhost.
func consoleURL(cfg config.Config, addr net.Addr) string {
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return scheme + "://" + addr.String()
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// seedPolicy activates the example policy when no policy is active, or when
// the active one is the example (or an earlier example the demo activated); a
// policy an admin activated is kept, since replacing it silently would undo
// their work on every restart. It says which it did in one line.
func seedPolicy(e *env, cfg config.Config) error {
	pool, err := e.pool(cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	active, err := store.PolicyGetActive(e.ctx, pool)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	switch {
	case active != nil && active.Source == string(policy.Example):
		fmt.Fprintf(e.stdout, "the example policy is active (version %d)\n", active.Version)
		return nil
	case active != nil && (active.ActivatedBy == nil || *active.ActivatedBy != demoActor):
		by := active.CreatedBy
		if active.ActivatedBy != nil {
			by = *active.ActivatedBy
		}
		fmt.Fprintf(e.stdout, "keeping the active policy version %d (activated by %s); the example policy was not applied\n", active.Version, by)
		return nil
	}
	v, err := policystore.Apply(e.ctx, pool, policy.Example, demoActor)
	if err != nil {
		return fmt.Errorf("apply the example policy: %w", err)
	}
	fmt.Fprintf(e.stdout, "activated the example policy as version %d\n", v.Version)
	return nil
}

// demoActor is who the demo's own changes are recorded as.
const demoActor = "demo"

// DemoPassword is the demo users' password, printed by `countersign demo` and
// written in the README. Demo accounts only.
const DemoPassword = "countersign-demo"

// demoUsers are created by `countersign demo` when missing.
var demoUsers = []struct {
	email, name string
	role        vocab.Role
}{
	{"admin@example.com", "Ada Admin", vocab.RoleAdmin},
	{"approver@example.com", "Alan Approver", vocab.RoleApprover},
	{"approver2@example.com", "Grace Approver", vocab.RoleApprover},
	{"reviewer@example.com", "Rita Reviewer", vocab.RoleReviewer},
	{"viewer@example.com", "Victor Viewer", vocab.RoleViewer},
	// The demo's simulated colleagues (demo.Colleagues) decide as these.
	{"sam@example.com", "Sam Approver (demo colleague)", vocab.RoleApprover},
	{"kim@example.com", "Kim Approver (demo colleague)", vocab.RoleApprover},
	{"lee@example.com", "Lee Reviewer (demo colleague)", vocab.RoleReviewer},
}

func seedUsers(e *env, cfg config.Config) error {
	pool, err := e.pool(cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	for _, u := range demoUsers {
		_, err := account.Create(e.ctx, pool, u.email, u.name, string(u.role), DemoPassword, demoActor)
		if err != nil && !errors.Is(err, account.ErrExists) {
			return fmt.Errorf("demo user %s: %w", u.email, err)
		}
	}
	return nil
}
