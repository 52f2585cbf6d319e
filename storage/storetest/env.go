package storetest

import (
	"os"
	"testing"
)

// PostgresURL is the PostgreSQL database tests may use (LLM_TEST_POSTGRES_URL).
// Without it the test is skipped, except under CI, where it fails: CI must
// run the PostgreSQL tests.
func PostgresURL(t testing.TB) string {
	return need(t, "LLM_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL")
}

// RedisAddr is the Redis server tests may use (LLM_TEST_REDIS_ADDR), with
// the same rule.
func RedisAddr(t testing.TB) string {
	return need(t, "LLM_TEST_REDIS_ADDR", "127.0.0.1:6379", "Redis")
}

func need(t testing.TB, name, example, what string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set; CI must run the %s tests", name, what)
		}
		t.Skipf("set %s (e.g. %s) to run the %s tests", name, example, what)
	}
	return v
}
