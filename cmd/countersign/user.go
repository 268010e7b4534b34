package main

import (
	"bufio"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/store"
)

func cmdUser(e *env, args []string) error {
	if len(args) == 0 {
		return usagef("expected a subcommand: add, list, role, disable or enable")
	}
	switch args[0] {
	case "add":
		return cmdUserAdd(e, args[1:])
	case "list":
		return cmdUserList(e, args[1:])
	case "disable", "enable":
		return cmdUserDisable(e, args[0], args[1:])
	case "role":
		return cmdUserRole(e, args[1:])
	}
	return usagef("unknown subcommand %q (want add, list, role, disable or enable)", args[0])
}

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
	pool, err := e.open(*dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	u, err := account.Create(e.ctx, pool, *email, *name, *role, *password, "cli")
	if errors.Is(err, account.ErrInvalid) || errors.Is(err, account.ErrExists) {
		return usageError{err.Error()}
	} else if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "added %s (%s) as %s\n", u.Email, u.Name, u.Role)
	return nil
}

func cmdUserList(e *env, args []string) error {
	fs, dbURL := e.flags("user list", "user list")
	if err := parse(fs, args); err != nil {
		return err
	}
	pool, err := e.open(*dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	users, err := store.UserList(e.ctx, pool)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EMAIL\tNAME\tROLE\tSTATE")
	for _, u := range users {
		state := "active"
		if u.Disabled {
			state = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Email, u.Name, u.Role, state)
	}
	return tw.Flush()
}

func cmdUserDisable(e *env, verb string, args []string) error {
	fs, dbURL := e.flags("user "+verb, "user "+verb+" EMAIL")
	if err := parse(fs, args); err != nil {
		return err
	}
	email, err := oneArg(fs, "the user's email")
	if err != nil {
		return err
	}
	pool, err := e.open(*dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := account.SetDisabled(e.ctx, pool, email, verb == "disable", "cli"); errors.Is(err, store.ErrNotFound) {
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
	pool, err := e.open(*dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	err = account.SetRole(e.ctx, pool, fs.Arg(0), fs.Arg(1), "cli")
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("no user %s", fs.Arg(0))
	case errors.Is(err, account.ErrInvalid):
		return usageError{err.Error()}
	case err != nil:
		return err
	}
	fmt.Fprintf(e.stdout, "%s is now %s; their sessions have ended\n", fs.Arg(0), fs.Arg(1))
	return nil
}
