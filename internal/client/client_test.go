package client_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/client"
	"github.com/countersign/countersign/internal/testapp"
)

func TestClient(t *testing.T) {
	t.Parallel()
	b := testapp.Start(t, testapp.Options{Web: true, NoWorker: true})
	_, err := account.Create(context.Background(), b.Pool, "ann@example.com", "Ann", "reviewer", "correct-horse-battery", "setup")
	require.NoError(t, err)

	// In turn: signing out ends every session of the user.
	t.Run("SignIn", func(t *testing.T) {
		c, err := client.SignIn(b.Addr, "ann@example.com", "correct-horse-battery")
		require.NoError(t, err)
		require.NotEmpty(t, c.CSRF)
		resp, err := c.HTTP.Get(b.Addr + "/")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)

		resp, _, err = c.Post("/logout", nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		resp, err = c.HTTP.Get(b.Addr + "/")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusSeeOther, resp.StatusCode, "signed out")
	})

	t.Run("WrongPassword", func(t *testing.T) {
		_, err := client.SignIn(b.Addr, "ann@example.com", "wrong-password-here")
		require.ErrorContains(t, err, "not 303 to /")
	})

	t.Run("DecideWithoutTokenIsRefused", func(t *testing.T) {
		c, err := client.SignIn(b.Addr, "ann@example.com", "correct-horse-battery")
		require.NoError(t, err)
		c.CSRF = "forged"
		status, err := c.Decide("00000000-0000-0000-0000-000000000000", "approve", "x", nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusForbidden, status)
	})
}
