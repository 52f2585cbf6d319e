// Package storage defines, once, what llmgate keeps durably: users and their
// tier, balances with holds and an append-only ledger, usage records, gateway
// API keys, BYOK keys, provider health snapshots and a metering outbox. Two
// backends implement it (package sqlstore: SQLite, the embedded default, and
// PostgreSQL through pgx) and pass one conformance suite (package storetest).
//
// Money is integer micro-credits. Every change of a balance is one
// transaction that writes a ledger entry and applies a conditional update, so
// a balance always equals the sum of its ledger and concurrency never takes
// available credit below zero.
package storage

import (
	"context"
	"errors"
	"time"
)

var (
	// ErrNotFound: no such row.
	ErrNotFound = errors.New("storage: not found")
	// ErrInsufficientCredits: a hold would take the available balance below zero.
	ErrInsufficientCredits = errors.New("storage: insufficient credits")
	// ErrConflict: the id or idempotency key is already used for something else.
	ErrConflict = errors.New("storage: conflicting write")
	// ErrUnavailable wraps errors reaching the database.
	ErrUnavailable = errors.New("storage: database unavailable")
)

// User is a caller known to the gateway.
type User struct {
	ID        string
	Org       string
	Tier      string
	CreatedAt time.Time
}

// Balance is a user's credit. Available = BalanceMicros - HeldMicros.
type Balance struct {
	User          string
	BalanceMicros int64
	HeldMicros    int64
	UpdatedAt     time.Time
}

// Available is what new holds may take.
func (b Balance) Available() int64 { return b.BalanceMicros - b.HeldMicros }

// Ledger entry kinds.
const (
	KindGrant    = "grant"    // a tier's periodic allowance
	KindPurchase = "purchase" // credits added by an admin or a payment
	KindUsage    = "usage"    // a settled request
	KindRefund   = "refund"
	KindAdjust   = "adjust"
	KindImport   = "import" // carried over from the seed system
	KindExpire   = "expire" // unused allowance of a period that does not roll over
)

// LedgerEntry is one signed change of a balance. Key is unique per store: a
// request id for usage, a caller-given idempotency key otherwise.
type LedgerEntry struct {
	ID           int64
	User         string
	AmountMicros int64
	Kind         string
	Key          string
	Note         string
	BalanceAfter int64
	CreatedAt    time.Time
}

// Hold reserves credit for one request until it is settled or released.
type Hold struct {
	ID           string // the request id
	User         string
	AmountMicros int64
	ExpiresAt    time.Time
	CreatedAt    time.Time
}

// Usage is one metered request.
type Usage struct {
	RequestID    string
	User         string
	Org          string
	Model        string
	Provider     string
	TokensIn     int64
	TokensOut    int64
	CostMicros   int64
	LatencyMS    int64
	BYOK         bool
	Estimated    bool // tokens counted by the gateway, not reported by the provider
	CreatedAt    time.Time
	CacheReadIn  int64
	CacheWriteIn int64
}

// UsageSummary is one day's usage of one model.
type UsageSummary struct {
	Day        time.Time // midnight UTC
	Model      string
	Requests   int64
	TokensIn   int64
	TokensOut  int64
	CostMicros int64
}

// UsageQuery selects usage records, newest first.
type UsageQuery struct {
	User   string // empty: all users
	Model  string // empty: all models
	Since  time.Time
	Until  time.Time
	Limit  int
	Before string // request id to page before (exclusive), empty for the newest
}

// APIKey is a gateway key, stored as a hash only.
type APIKey struct {
	ID        string
	Hash      string // hex SHA-256 of the key
	Prefix    string // first characters, for display
	Owner     string
	Name      string
	Scopes    []string
	CreatedAt time.Time
	RevokedAt *time.Time
	LastUsed  *time.Time
}

// BYOKKey is a user's own provider key, encrypted by the BYOK key ring.
type BYOKKey struct {
	ID         string
	Owner      string
	Provider   string
	Name       string
	Ciphertext string
	KeyID      string // key ring id that encrypted it ("legacy-fernet" for imported rows)
	Status     string // active, disabled
	CreatedAt  time.Time
	ExpiresAt  *time.Time
	LastUsed   *time.Time
}

// HealthSnapshot is the persisted health of one deployment.
type HealthSnapshot struct {
	Provider   string
	Deployment string
	State      string
	LatencyMS  int64
	ErrorCount int64
	LastCheck  time.Time
	UpdatedAt  time.Time
}

// OutboxMessage is one message for an external system (metering export).
type OutboxMessage struct {
	ID        int64
	Topic     string
	Key       string // idempotency key, unique per topic
	Payload   []byte
	Attempts  int
	CreatedAt time.Time
}

// Settlement closes a hold with the real cost and its usage record.
type Settlement struct {
	HoldID     string // the request id; also the ledger key
	User       string
	CostMicros int64
	Usage      Usage
	// Outbox, when set, is enqueued in the same transaction (metering export).
	Outbox *OutboxMessage
}

// Store is what llmgate needs from a database.
type Store interface {
	// Ping checks that the database answers and the schema is ready.
	Ping(ctx context.Context) error
	Close() error

	UpsertUser(ctx context.Context, u User) error
	GetUser(ctx context.Context, id string) (User, error)

	GetBalance(ctx context.Context, user string) (Balance, error)
	// AddCredits applies a signed amount with a ledger entry, once per key:
	// a second call with the same key changes nothing and returns the first
	// entry with created=false. A debit may not take the balance below the
	// held amount (ErrInsufficientCredits).
	AddCredits(ctx context.Context, e LedgerEntry) (entry LedgerEntry, created bool, err error)
	// Reserve places a hold, or fails with ErrInsufficientCredits. A hold with
	// the same id already in place is not placed twice.
	Reserve(ctx context.Context, h Hold) error
	// Settle debits the real cost, writes the ledger entry (keyed by the hold
	// id) and the usage record, and releases the hold, in one transaction.
	// Settling twice changes nothing and returns created=false.
	Settle(ctx context.Context, s Settlement) (entry LedgerEntry, created bool, err error)
	// Release frees a hold without charging. Releasing a missing hold is not an error.
	Release(ctx context.Context, holdID string) error
	// ExpireHolds releases holds whose time has passed, returning how many.
	ExpireHolds(ctx context.Context, now time.Time) (int, error)
	GetHold(ctx context.Context, id string) (Hold, error)
	// GetLedgerEntry finds the entry with a key.
	GetLedgerEntry(ctx context.Context, key string) (LedgerEntry, error)
	ListLedger(ctx context.Context, user string, limit int) ([]LedgerEntry, error)

	RecordUsage(ctx context.Context, u Usage) (created bool, err error)
	ListUsage(ctx context.Context, q UsageQuery) ([]Usage, error)
	// SummarizeUsage totals usage by UTC day and model for q's user and
	// time range (Limit and Before are ignored).
	SummarizeUsage(ctx context.Context, q UsageQuery) ([]UsageSummary, error)
	// SpentSince totals the cost of a user's usage in [since, until).
	SpentSince(ctx context.Context, user string, since, until time.Time) (int64, error)

	CreateAPIKey(ctx context.Context, k APIKey) error
	GetAPIKeyByHash(ctx context.Context, hash string) (APIKey, error)
	ListAPIKeys(ctx context.Context, owner string) ([]APIKey, error)
	// RevokeAPIKey revokes a key of owner (any owner when owner is empty).
	RevokeAPIKey(ctx context.Context, owner, id string, at time.Time) error

	PutBYOKKey(ctx context.Context, k BYOKKey) error
	ListBYOKKeys(ctx context.Context, owner string) ([]BYOKKey, error)
	DeleteBYOKKey(ctx context.Context, owner, id string) error
	TouchBYOKKey(ctx context.Context, id string, at time.Time) error
	// CountBYOKKeys counts stored keys by the key-ring id that encrypted them.
	CountBYOKKeys(ctx context.Context) (map[string]int64, error)

	SaveHealth(ctx context.Context, s HealthSnapshot) error
	ListHealth(ctx context.Context) ([]HealthSnapshot, error)

	// Enqueue adds a message once per (topic, key).
	Enqueue(ctx context.Context, m OutboxMessage) error
	// ClaimOutbox takes up to n unsent messages of topic, hiding them from
	// other claimers until lease passes.
	ClaimOutbox(ctx context.Context, topic string, n int, lease time.Duration, now time.Time) ([]OutboxMessage, error)
	AckOutbox(ctx context.Context, ids []int64, now time.Time) error
	// UnclaimOutbox makes claimed messages claimable again at once (their
	// delivery failed).
	UnclaimOutbox(ctx context.Context, ids []int64) error
	// OutboxDepth counts unsent messages of topic.
	OutboxDepth(ctx context.Context, topic string) (int64, error)
}
