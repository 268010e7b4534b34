package cli

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/store"
)

func cmdUserAdd(e *env, args []string) error {
	fs, dbURL := e.flags("user add", "user add --email E --name N --role R [--password P] (or the password on stdin)")
	email := fs.String("email", "", "the user's email, their sign-in name (required)")
	name := fs.String("name", "", "display name (required)")
	role := fs.String("role", "", "viewer, reviewer, approver or admin (required)")
	password := fs.String("password", "", "the password; read from the first line of stdin when absent")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *email == "" || *name == "" || *role == "" {
		return usagef("--email, --name and --role are required")
	}
	if *password == "" {
		line, err := bufio.NewReader(e.stdin).ReadString('\n')
		if err != nil && line == "" {
			return usagef("no password: pass --password or write it to stdin")
		}
		*password = strings.TrimRight(line, "\r\n")
	}
	u, err := withDBV(e, *dbURL, func(pool *pgxpool.Pool) (*store.User, error) {
		return account.Create(e.ctx, pool, *email, *name, *role, *password, "cli")
	})
	if errors.Is(err, account.ErrInvalid) || errors.Is(err, account.ErrExists) {
		return usageError{err}
	} else if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "added %s (%s) as %s\n", u.Email, u.Name, u.Role)
	return nil
}

func cmdUserList(e *env, args []string) error {
	fs, _ := e.flags("user list", "user list")
	users, err := parseQuery(e, fs, args, store.UserList)
	if err != nil {
		return err
	}
	tw := table(e.stdout, "EMAIL\tNAME\tROLE\tSTATE")
	for _, u := range users {
		state := "active"
		if u.Disabled {
			state = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Email, u.Name, u.Role, state)
	}
	return tw.Flush()
}

func cmdUserDisable(e *env, args []string) error { return setDisabled(e, "disable", args) }

func cmdUserEnable(e *env, args []string) error { return setDisabled(e, "enable", args) }

// setDisabled is user disable and user enable, which verb names.
func setDisabled(e *env, verb string, args []string) error {
	fs, dbURL := e.flags("user "+verb, "user "+verb+" EMAIL")
	email, err := parseOne(fs, args, "the user's email")
	if err != nil {
		return err
	}
	err = e.withDB(*dbURL, func(pool *pgxpool.Pool) error {
		return account.SetDisabled(e.ctx, pool, email, verb == "disable", "cli")
	})
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no user %s", email)
	} else if err != nil {
		return err
	}
	if verb == "disable" {
		fmt.Fprintf(e.stdout, "disabled %s; every session of theirs has ended\n", email)
	} else {
		fmt.Fprintf(e.stdout, "enabled %s\n", email)
	}
	return nil
}

func cmdUserRole(e *env, args []string) error {
	fs, dbURL := e.flags("user role", "user role EMAIL ROLE")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usagef("expected the user's email and the new role")
	}
	err := e.withDB(*dbURL, func(pool *pgxpool.Pool) error {
		return account.SetRole(e.ctx, pool, fs.Arg(0), fs.Arg(1), "cli")
	})
	if err := accountErr(err, "no user "+fs.Arg(0)); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s is now %s; their sessions have ended\n", fs.Arg(0), fs.Arg(1))
	return nil
}
