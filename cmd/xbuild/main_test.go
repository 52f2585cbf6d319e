package main

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// The manifest is the one place the Caddy version is chosen; go.mod must pin
// the same version, or the gateway that `go test` checks is not the one
// users build.
func TestManifestMatchesGoMod(t *testing.T) {
	b, err := Load("../../xcaddy.json")
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`github.com/caddyserver/caddy/v2 (v\S+)`).FindSubmatch(mod)
	if m == nil || string(m[1]) != b.CaddyVersion {
		t.Fatalf("xcaddy.json builds Caddy %s but go.mod pins %s", b.CaddyVersion, m)
	}
	if len(b.Plugins) != 1 || b.Plugins[0].PackagePath != "github.com/llmgate/llmgate" {
		t.Fatalf("plugins %+v", b.Plugins)
	}
	root, _ := filepath.Abs("../..")
	if len(b.Replacements) != 1 || string(b.Replacements[0].New) != root {
		t.Fatalf("replacement not resolved to the checkout: %+v", b.Replacements)
	}
}
