package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/store"
)

// defaultTokenLife is how long a token lives unless --expires says otherwise
// (90 days): a forgotten agent's token should not work for ever.
const defaultTokenLife = "2160h"

// stringsFlag is a flag that may be given several times.
type stringsFlag []string

func (f *stringsFlag) String() string     { return strings.Join(*f, ",") }
func (f *stringsFlag) Set(v string) error { *f = append(*f, v); return nil }

func cmdTokenCreate(e *env, args []string) error {
	fs, dbURL := e.flags("token create", "token create --email E --scope S [--scope S …] [--name N] [--expires 2160h|never]\n\nScopes:\n"+scopeHelp())
	email := fs.String("email", "", "the user the token acts as (required)")
	name := fs.String("name", "api", "a name to recognise the token by")
	var scopes stringsFlag
	fs.Var(&scopes, "scope", "a scope the token gets; repeat or separate with commas (at least one)")
	expires := fs.String("expires", defaultTokenLife, "how long the token works, as a duration (720h), or never")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *email == "" {
		return usagef("--email is required")
	}
	var life time.Duration
	if *expires != "never" {
		d, err := time.ParseDuration(*expires)
		if err != nil || d <= 0 {
			return usagef("--expires must be a positive duration such as 720h, or never")
		}
		life = d
	}
	// Checked before the database is opened, so that a typo costs nothing.
	if _, err := account.ParseScopes(scopes); err != nil {
		return usageError{err}
	}
	var tok *store.Token
	var secret string
	err := e.withDB(*dbURL, func(pool *pgxpool.Pool) (err error) {
		tok, secret, err = account.CreateToken(e.ctx, pool, account.TokenParams{Email: *email, Name: *name, Scopes: scopes,
			ExpiresIn: life, By: "cli"})
		return err
	})
	if err := accountErr(err, "no user "+*email); err != nil {
		return err
	}
	expiry := "never expires"
	if tok.ExpiresAt != nil {
		expiry = "expires " + tok.ExpiresAt.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(e.stderr, "token %s for %s (%s; %s); the secret is shown once, it is stored only as a hash:\n",
		tok.PublicID, tok.UserEmail, strings.Join(tok.Scopes, ", "), expiry)
	fmt.Fprintln(e.stdout, secret)
	// stdout stays the token alone, for scripts that capture it.
	fmt.Fprintf(e.stderr, "callback secret (signs this token's callbacks; shown once): %s\n", callback.SecretText(tok.CallbackSecret))
	return nil
}

func scopeHelp() string {
	var b strings.Builder
	for _, s := range account.Scopes {
		fmt.Fprintf(&b, "  %-14s %s\n", s.Name, s.Description)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func cmdTokenList(e *env, args []string) error {
	fs, dbURL := e.flags("token list", "token list [--email E] [--json]")
	email := fs.String("email", "", "only this user's tokens")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	tokens, err := withDBV(e, *dbURL, func(pool *pgxpool.Pool) ([]*store.Token, error) {
		return account.ListTokens(e.ctx, pool, *email)
	})
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no user %s", *email)
	} else if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, tokens)
	}
	when := func(t *time.Time, none string) string {
		if t == nil {
			return none
		}
		return t.UTC().Format(time.RFC3339)
	}
	tw := table(e.stdout, "ID\tUSER\tNAME\tSCOPES\tCREATED\tEXPIRES\tLAST USED\tREVOKED")
	for _, t := range tokens {
		revoked := when(t.RevokedAt, "-")
		if t.RevokedBy != nil {
			revoked += " by " + *t.RevokedBy
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.PublicID, t.UserEmail, t.Name, strings.Join(t.Scopes, ","),
			t.CreatedAt.UTC().Format(time.RFC3339), when(t.ExpiresAt, "never"), when(t.LastUsedAt, "never"), revoked)
	}
	return tw.Flush()
}

func cmdTokenRevoke(e *env, args []string) error {
	fs, dbURL := e.flags("token revoke", "token revoke ID  (the id token list shows, e.g. cs_1a2b3c4d)")
	id, err := parseOne(fs, args, "the token's id")
	if err != nil {
		return err
	}
	tok, err := withDBV(e, *dbURL, func(pool *pgxpool.Pool) (*store.Token, error) {
		return account.RevokeToken(e.ctx, pool, id, "cli")
	})
	if err := accountErr(err, "no token "+id); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "revoked %s (%s, %s); calls with it are refused from now on\n", tok.PublicID, tok.UserEmail, tok.Name)
	return nil
}
