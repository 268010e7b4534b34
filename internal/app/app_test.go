package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/testdb"
)

func TestSessionKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.New(t)
	key := func() string {
		b := make([]byte, 64)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b)
	}

	t.Run("TheAppRoleCannotReadStoredKeys", func(t *testing.T) {
		// A pool whose sessions run as countersign_app, as production should.
		pc, err := pgxpool.ParseConfig(url)
		require.NoError(t, err)
		pc.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, "SET ROLE countersign_app")
			return err
		}
		app, err := pgxpool.NewWithConfig(ctx, pc)
		require.NoError(t, err)
		t.Cleanup(app.Close)
		_, err = app.Exec(ctx, `SELECT value FROM settings`)
		require.ErrorContains(t, err, "permission denied")
		_, err = sessionKeys(ctx, app, config.Config{})
		require.ErrorContains(t, err, "COUNTERSIGN_SESSION_KEY")

		k := key()
		keys, err := sessionKeys(ctx, app, config.Config{SessionKey: k})
		require.NoError(t, err)
		require.Len(t, keys, 1)
		require.Equal(t, k, hex.EncodeToString(keys[0]))
	})

	t.Run("RotationListsNewestFirst", func(t *testing.T) {
		newer, older := key(), key()
		file := filepath.Join(t.TempDir(), "keys")
		require.NoError(t, os.WriteFile(file, []byte(newer+"\n"+older+"\n"), 0o600))
		keys, err := sessionKeys(ctx, nil, config.Config{SessionKeyFile: file})
		require.NoError(t, err)
		require.Equal(t, []string{newer, older}, []string{hex.EncodeToString(keys[0]), hex.EncodeToString(keys[1])})
		keys, err = sessionKeys(ctx, nil, config.Config{SessionKey: newer + "," + older})
		require.NoError(t, err)
		require.Len(t, keys, 2)
		_, err = sessionKeys(ctx, nil, config.Config{SessionKey: newer + ",abc"})
		require.ErrorContains(t, err, "key 2 is not 64 bytes")
	})

	t.Run("WithoutConfigurationTheOwnerSharesOneStoredKey", func(t *testing.T) {
		pool, err := pgxpool.New(ctx, url)
		require.NoError(t, err)
		t.Cleanup(pool.Close)
		a, err := sessionKeys(ctx, pool, config.Config{})
		require.NoError(t, err)
		b, err := sessionKeys(ctx, pool, config.Config{})
		require.NoError(t, err)
		require.Equal(t, a, b)
	})
}

func TestHTTPServerTimeouts(t *testing.T) {
	t.Parallel()
	// Without them a client that trickles its request or never reads the
	// answer holds a connection (and a goroutine) for ever.
	srv := newHTTPServer(nil)
	require.NotZero(t, srv.ReadHeaderTimeout)
	require.NotZero(t, srv.ReadTimeout)
	require.NotZero(t, srv.WriteTimeout)
	require.NotZero(t, srv.IdleTimeout)
}

func TestPublicOrigins(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"https://cs.example.com"}, publicOrigins(config.Config{PublicURL: "https://CS.example.com/", Addr: ":8080"}, nil))
	require.Equal(t, []string{"http://localhost:8080", "http://127.0.0.1:8080", "http://[::1]:8080"}, publicOrigins(config.Config{Addr: ":8080"}, nil))
}

func TestWebNeedsAReceiptKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.New(t)
	pc, err := pgxpool.ParseConfig(url)
	require.NoError(t, err)
	pc.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, "SET ROLE countersign_app")
		return err
	}
	appRole, err := pgxpool.NewWithConfig(ctx, pc)
	require.NoError(t, err)
	t.Cleanup(appRole.Close)
	session := make([]byte, 64)
	_, _ = rand.Read(session)
	cfg := config.Config{DatabaseURL: url, Addr: "127.0.0.1:0", Workers: 1, RescueAfter: time.Minute, SessionKey: hex.EncodeToString(session)}

	// The application role may not read the stored key: it must be given one.
	_, err = New(cfg, appRole, Options{Web: true})
	require.ErrorContains(t, err, "COUNTERSIGN_RECEIPT_KEY")

	seed := make([]byte, 32)
	_, _ = rand.Read(seed)
	cfg.ReceiptKey = filepath.Join(t.TempDir(), "receipt.hex")
	require.NoError(t, os.WriteFile(cfg.ReceiptKey, []byte(hex.EncodeToString(seed)), 0o600))
	a, err := New(cfg, appRole, Options{Web: true})
	require.NoError(t, err)
	keys, err := a.Receipts.Keys(ctx)
	require.NoError(t, err)
	require.Len(t, keys, 1, "the configured key, published from memory")

	cfg.ReceiptKey = filepath.Join(t.TempDir(), "missing")
	_, err = New(cfg, appRole, Options{Web: true})
	require.ErrorContains(t, err, "COUNTERSIGN_RECEIPT_KEY")
}
