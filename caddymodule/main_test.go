package caddymodule_test

import (
	"os"
	"testing"
)

// TestMain points Caddy's data directory (where the default SQLite store
// lives) at a temporary folder, so tests never touch a real installation.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "llmgate-test-data")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_DATA_HOME", dir)
	os.Setenv("XDG_CONFIG_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
