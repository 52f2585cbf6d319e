package importer

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/llmgate/llmgate/storage"
	"github.com/llmgate/llmgate/storage/sqlstore"
	"github.com/llmgate/llmgate/vault"
)

// Rewrap re-encrypts every stored BYOK key not under the ring's active key
// (older keys, imported Fernet tokens) to the active key. It returns how
// many rows it rewrote and how many it could not decrypt.
func Rewrap(ctx context.Context, s storage.Store, ring *vault.Ring) (rewrapped, failed int, err error) {
	keys, err := s.ListBYOKKeys(ctx, "")
	if err != nil {
		return 0, 0, err
	}
	for _, k := range keys {
		if k.KeyID == ring.ActiveID() {
			continue
		}
		pt, _, derr := ring.Decrypt(k.Owner, k.Provider, k.Ciphertext)
		if derr != nil {
			failed++
			continue
		}
		k.Ciphertext, k.KeyID = ring.Encrypt(k.Owner, k.Provider, pt)
		if err := s.PutBYOKKey(ctx, k); err != nil {
			return rewrapped, failed, err
		}
		rewrapped++
	}
	return rewrapped, failed, nil
}

// openStore opens a store from "sqlite:<path>" (default: Caddy's data
// directory) or a PostgreSQL DSN.
func openStore(ctx context.Context, to, schema string) (*sqlstore.Store, error) {
	if to == "" || strings.HasPrefix(to, "sqlite:") {
		path := strings.TrimPrefix(to, "sqlite:")
		if path == "" {
			path = filepath.Join(caddy.AppDataDir(), "llmgate", "llmgate.db")
		}
		return sqlstore.OpenSQLite(ctx, path)
	}
	s, err := sqlstore.OpenPostgres(to, sqlstore.PostgresOptions{Schema: schema})
	if err == nil {
		err = s.Ping(ctx)
	}
	return s, err
}

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "llm-byok",
		Usage: "rewrap [--store sqlite:<path> | --store <postgres-dsn>] [--schema <schema>] [--key-ring <keys>]",
		Short: "Re-encrypts every stored BYOK key to the key ring's active key",
		Long: `
After putting a new key first in BYOK_ENCRYPTION_KEY and reloading, run
"llm-byok rewrap" to re-encrypt every stored user key (older keys and imported
Fernet tokens) under the new key. The llmgate_byok_keys metric then shows 0
rows for the old key id, and the old key can leave the ring.

--key-ring defaults to {env.BYOK_ENCRYPTION_KEY}; --store to the embedded
SQLite store under Caddy's data directory.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("store", "", "sqlite:<path> or a postgres:// DSN")
			cmd.Flags().String("schema", "", "PostgreSQL schema of the store")
			cmd.Flags().String("key-ring", "{env.BYOK_ENCRYPTION_KEY}", "the key ring, new key first")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(runRewrap)
		},
	})
}

func runRewrap(fl caddycmd.Flags) (int, error) {
	if fl.Arg(0) != "rewrap" {
		return caddy.ExitCodeFailedStartup, errors.New(`usage: llm-byok rewrap [flags]`)
	}
	ctx := context.Background()
	repl := caddy.NewReplacer()
	ring, err := vault.ParseRing(repl.ReplaceKnown(fl.String("key-ring"), ""))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	s, err := openStore(ctx, repl.ReplaceKnown(fl.String("store"), ""), fl.String("schema"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	defer s.Close()
	n, failed, err := Rewrap(ctx, s, ring)
	if err != nil {
		return caddy.ExitCodeFailedQuit, err
	}
	fmt.Printf("llm-byok rewrap: %d keys re-encrypted to %s; %d could not be decrypted with this ring\n", n, ring.ActiveID(), failed)
	if failed > 0 {
		return caddy.ExitCodeFailedQuit, fmt.Errorf("%d keys were left as they were", failed)
	}
	return caddy.ExitCodeSuccess, nil
}
