// Package importer copies the Ops-Center (seed) LiteLLM tables into
// llmgate's store: litellm_credits become users and balance entries in the
// ledger, litellm_usage rows become usage records, litellm_byok_keys keep
// their Fernet ciphertext for the BYOK vault's legacy decryption, and
// litellm_provider_health rows become health snapshots. Running it twice
// changes nothing the second time. It is the `caddy llm-import` command.
package importer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/llmgate/llmgate/catalog"
	"github.com/llmgate/llmgate/storage"
)

// LegacyKeyID marks BYOK ciphertext written by the seed system (Fernet).
const LegacyKeyID = "legacy-fernet"

// Report counts what one run did.
type Report struct {
	Users, Credits, CreditsSkipped int
	Usage, UsageSkipped            int
	BYOK                           int
	Health                         int
}

func (r Report) String() string {
	return fmt.Sprintf("users %d; balances credited %d (already imported %d); usage records %d (already imported %d); BYOK keys %d; health snapshots %d",
		r.Users, r.Credits, r.CreditsSkipped, r.Usage, r.UsageSkipped, r.BYOK, r.Health)
}

// Import copies the seed tables found in schema of the seed database into to.
func Import(ctx context.Context, seed *pgx.Conn, schema string, to storage.Store) (Report, error) {
	var rep Report
	if schema == "" {
		schema = "public"
	}
	tbl := func(name string) string { return pgx.Identifier{schema, name}.Sanitize() }

	// Credits: the remaining credit (total - used), rounded to the micro-credit.
	rows, err := seed.Query(ctx, `SELECT user_id::text, COALESCE(tier::text, ''),
			round((COALESCE(total_credits, 0) - COALESCE(used_credits, 0))::numeric, 6)::text
		FROM `+tbl("litellm_credits")+` ORDER BY user_id`)
	if err != nil {
		return rep, fmt.Errorf("reading litellm_credits: %w", err)
	}
	type credit struct{ user, tier, amount string }
	var credits []credit
	for rows.Next() {
		var c credit
		if err := rows.Scan(&c.user, &c.tier, &c.amount); err != nil {
			rows.Close()
			return rep, err
		}
		credits = append(credits, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return rep, err
	}
	for _, c := range credits {
		micros, err := parseSignedMicros(c.amount)
		if err != nil {
			return rep, fmt.Errorf("litellm_credits user %s: %w", c.user, err)
		}
		if err := to.UpsertUser(ctx, storage.User{ID: c.user, Tier: c.tier}); err != nil {
			return rep, err
		}
		rep.Users++
		if micros <= 0 {
			continue // nothing left to carry over
		}
		_, created, err := to.AddCredits(ctx, storage.LedgerEntry{User: c.user, AmountMicros: micros, Kind: storage.KindImport,
			Key: "import:credits:" + c.user, Note: "balance carried over from Ops-Center litellm_credits"})
		if err != nil {
			return rep, fmt.Errorf("crediting %s: %w", c.user, err)
		}
		if created {
			rep.Credits++
		} else {
			rep.CreditsSkipped++
		}
	}

	// Usage: a stable id per row from its content (and its rank among
	// identical rows), so a second run finds what the first wrote.
	rows, err = seed.Query(ctx, `SELECT user_id::text, COALESCE(model::text, ''), COALESCE(provider::text, ''), COALESCE(tokens, 0)::bigint,
			round(COALESCE(cost, 0)::numeric, 6)::text,
			COALESCE((extract(epoch FROM "timestamp") * 1000000)::bigint, 0),
			md5(concat_ws('|', user_id, model, provider, tokens, cost, "timestamp")) || ':' ||
				row_number() OVER (PARTITION BY user_id, model, provider, tokens, cost, "timestamp" ORDER BY ctid)
		FROM `+tbl("litellm_usage")+` ORDER BY "timestamp", user_id`)
	if err != nil {
		return rep, fmt.Errorf("reading litellm_usage: %w", err)
	}
	var usage []storage.Usage
	for rows.Next() {
		var u storage.Usage
		var cost, id string
		var at int64
		if err := rows.Scan(&u.User, &u.Model, &u.Provider, &u.TokensIn, &cost, &at, &id); err != nil {
			rows.Close()
			return rep, err
		}
		if u.CostMicros, err = parseSignedMicros(cost); err != nil {
			rows.Close()
			return rep, fmt.Errorf("litellm_usage: %w", err)
		}
		u.RequestID, u.CreatedAt, u.Estimated = "import:"+id, time.UnixMicro(at), true
		usage = append(usage, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return rep, err
	}
	for _, u := range usage {
		created, err := to.RecordUsage(ctx, u)
		if err != nil {
			return rep, err
		}
		if created {
			rep.Usage++
		} else {
			rep.UsageSkipped++
		}
	}

	// BYOK keys keep their ciphertext; the vault decrypts them as Fernet.
	rows, err = seed.Query(ctx, `SELECT user_id::text, provider::text, encrypted_key::text, COALESCE(key_name::text, ''),
			COALESCE(is_active, true), COALESCE((extract(epoch FROM created_at) * 1000000)::bigint, 0),
			md5(concat_ws('|', user_id, provider, key_name, encrypted_key))
		FROM `+tbl("litellm_byok_keys")+` ORDER BY user_id, provider`)
	if err != nil {
		return rep, fmt.Errorf("reading litellm_byok_keys: %w", err)
	}
	var keys []storage.BYOKKey
	for rows.Next() {
		var k storage.BYOKKey
		var active bool
		var at int64
		var id string
		if err := rows.Scan(&k.Owner, &k.Provider, &k.Ciphertext, &k.Name, &active, &at, &id); err != nil {
			rows.Close()
			return rep, err
		}
		k.ID, k.KeyID, k.Status, k.CreatedAt = "import-"+id, LegacyKeyID, "active", time.UnixMicro(at)
		if !active {
			k.Status = "disabled"
		}
		keys = append(keys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return rep, err
	}
	for _, k := range keys {
		if err := to.PutBYOKKey(ctx, k); err != nil {
			return rep, fmt.Errorf("BYOK key of %s: %w", k.Owner, err)
		}
		rep.BYOK++
	}

	// Health: response_time is taken as milliseconds, as the seed recorded it.
	rows, err = seed.Query(ctx, `SELECT provider::text, COALESCE(status::text, ''), COALESCE(round(response_time::numeric), 0)::bigint,
			COALESCE((extract(epoch FROM last_check) * 1000000)::bigint, 0), COALESCE(error_count, 0)::bigint
		FROM `+tbl("litellm_provider_health")+` ORDER BY provider`)
	if err != nil {
		return rep, fmt.Errorf("reading litellm_provider_health: %w", err)
	}
	var hs []storage.HealthSnapshot
	for rows.Next() {
		h := storage.HealthSnapshot{Deployment: "imported"}
		var at int64
		if err := rows.Scan(&h.Provider, &h.State, &h.LatencyMS, &at, &h.ErrorCount); err != nil {
			rows.Close()
			return rep, err
		}
		h.LastCheck = time.UnixMicro(at)
		hs = append(hs, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return rep, err
	}
	for _, h := range hs {
		if err := to.SaveHealth(ctx, h); err != nil {
			return rep, err
		}
		rep.Health++
	}
	return rep, nil
}

// parseSignedMicros reads a decimal with at most six places ("-1.25") as
// micro-credits, without floating point: catalog.ParseMicros with a sign.
func parseSignedMicros(s string) (int64, error) {
	digits, neg := strings.CutPrefix(strings.TrimSpace(s), "-")
	v, err := catalog.ParseMicros(digits)
	if neg {
		v = -v
	}
	return v, err
}

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "llm-import",
		Usage: "--from <seed-postgres-dsn> [--from-schema public] [--to sqlite:<path> | --to <postgres-dsn>] [--to-schema <schema>]",
		Short: "Copies the Ops-Center LiteLLM tables into llmgate's store",
		Long: `
Copies litellm_credits, litellm_usage, litellm_byok_keys and
litellm_provider_health from an existing Ops-Center PostgreSQL database into
llmgate's store. Remaining credits (total - used) become one import entry in
each user's ledger; usage rows become usage records (marked estimated, their
token count in tokens_in); BYOK rows keep their Fernet ciphertext; health rows
become snapshots. Running it again imports nothing twice.

--to defaults to the embedded SQLite store under Caddy's data directory; give
a postgres:// DSN to import into PostgreSQL. DSNs may be given as {env.NAME}
so they stay out of shell history.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("from", "", "DSN of the Ops-Center database")
			cmd.Flags().String("from-schema", "public", "schema of the litellm_* tables")
			cmd.Flags().String("to", "", "target store: sqlite:<path> or a postgres:// DSN")
			cmd.Flags().String("to-schema", "", "PostgreSQL schema of the target store")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(run)
		},
	})
}

func run(fl caddycmd.Flags) (int, error) {
	ctx := context.Background()
	repl := caddy.NewReplacer()
	from := repl.ReplaceKnown(fl.String("from"), "")
	to := repl.ReplaceKnown(fl.String("to"), "")
	if from == "" {
		return caddy.ExitCodeFailedStartup, errors.New("--from is required")
	}
	seed, err := pgx.Connect(ctx, from)
	if err != nil {
		return caddy.ExitCodeFailedStartup, errors.New("cannot connect to the seed database (check --from)")
	}
	defer seed.Close(ctx)
	store, err := openStore(ctx, to, fl.String("to-schema"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	defer store.Close()
	rep, err := Import(ctx, seed, fl.String("from-schema"), store)
	if err != nil {
		return caddy.ExitCodeFailedQuit, err
	}
	fmt.Println("llm-import:", rep)
	return caddy.ExitCodeSuccess, nil
}
