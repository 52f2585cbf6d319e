CREATE TABLE llm_users (
	id         TEXT PRIMARY KEY,
	org        TEXT NOT NULL DEFAULT '',
	tier       TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL
);
CREATE TABLE llm_balances (
	user_id        TEXT PRIMARY KEY,
	balance_micros BIGINT NOT NULL DEFAULT 0,
	held_micros    BIGINT NOT NULL DEFAULT 0 CHECK (held_micros >= 0),
	updated_at     BIGINT NOT NULL
);
CREATE TABLE llm_ledger (
	id            BIGSERIAL PRIMARY KEY,
	user_id       TEXT NOT NULL,
	amount_micros BIGINT NOT NULL,
	kind          TEXT NOT NULL,
	idem_key      TEXT NOT NULL UNIQUE,
	note          TEXT NOT NULL DEFAULT '',
	balance_after BIGINT NOT NULL,
	created_at    BIGINT NOT NULL
);
CREATE INDEX llm_ledger_user ON llm_ledger (user_id, id);
CREATE TABLE llm_holds (
	id            TEXT PRIMARY KEY,
	user_id       TEXT NOT NULL,
	amount_micros BIGINT NOT NULL CHECK (amount_micros >= 0),
	expires_at    BIGINT NOT NULL,
	created_at    BIGINT NOT NULL
);
CREATE INDEX llm_holds_expiry ON llm_holds (expires_at);
CREATE TABLE llm_usage (
	request_id     TEXT PRIMARY KEY,
	user_id        TEXT NOT NULL,
	org            TEXT NOT NULL DEFAULT '',
	model          TEXT NOT NULL,
	provider       TEXT NOT NULL,
	tokens_in      BIGINT NOT NULL,
	tokens_out     BIGINT NOT NULL,
	cache_read_in  BIGINT NOT NULL DEFAULT 0,
	cache_write_in BIGINT NOT NULL DEFAULT 0,
	cost_micros    BIGINT NOT NULL,
	latency_ms     BIGINT NOT NULL,
	byok           BIGINT NOT NULL DEFAULT 0,
	estimated      BIGINT NOT NULL DEFAULT 0,
	created_at     BIGINT NOT NULL
);
CREATE INDEX llm_usage_user_time ON llm_usage (user_id, created_at);
CREATE INDEX llm_usage_time ON llm_usage (created_at);
CREATE TABLE llm_api_keys (
	id         TEXT PRIMARY KEY,
	hash       TEXT NOT NULL UNIQUE,
	prefix     TEXT NOT NULL,
	owner      TEXT NOT NULL,
	name       TEXT NOT NULL DEFAULT '',
	scopes     TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL,
	revoked_at BIGINT,
	last_used  BIGINT
);
CREATE INDEX llm_api_keys_owner ON llm_api_keys (owner);
CREATE TABLE llm_byok_keys (
	id         TEXT PRIMARY KEY,
	owner      TEXT NOT NULL,
	provider   TEXT NOT NULL,
	name       TEXT NOT NULL DEFAULT '',
	ciphertext TEXT NOT NULL,
	key_id     TEXT NOT NULL,
	status     TEXT NOT NULL DEFAULT 'active',
	created_at BIGINT NOT NULL,
	expires_at BIGINT,
	last_used  BIGINT
);
CREATE INDEX llm_byok_keys_owner ON llm_byok_keys (owner, provider);
CREATE TABLE llm_health (
	provider    TEXT NOT NULL,
	deployment  TEXT NOT NULL,
	state       TEXT NOT NULL,
	latency_ms  BIGINT NOT NULL DEFAULT 0,
	error_count BIGINT NOT NULL DEFAULT 0,
	last_check  BIGINT NOT NULL,
	updated_at  BIGINT NOT NULL,
	PRIMARY KEY (provider, deployment)
);
CREATE TABLE llm_outbox (
	id           BIGSERIAL PRIMARY KEY,
	topic        TEXT NOT NULL,
	idem_key     TEXT NOT NULL,
	payload      BYTEA NOT NULL,
	attempts     BIGINT NOT NULL DEFAULT 0,
	created_at   BIGINT NOT NULL,
	locked_until BIGINT NOT NULL DEFAULT 0,
	sent_at      BIGINT,
	UNIQUE (topic, idem_key)
);
CREATE INDEX llm_outbox_pending ON llm_outbox (topic, id) WHERE sent_at IS NULL;
