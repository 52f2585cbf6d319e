// Command xbuild builds the llmgate Caddy binary with xcaddy's own builder,
// from the manifest xcaddy.json (the JSON shape of xcaddy's Builder type:
// Caddy version, plugins, replacements). It is the one place the versions
// are listed:
//
//	go run ./cmd/xbuild                 # ./llmgate from ./xcaddy.json
//	go run ./cmd/xbuild -o /usr/local/bin/caddy -manifest path/to/xcaddy.json
//
// A relative replacement path is taken relative to the manifest's folder, so
// the checkout itself is the plugin that gets built in.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/caddyserver/xcaddy"
)

func main() {
	manifest := flag.String("manifest", "xcaddy.json", "build manifest")
	out := flag.String("o", "llmgate", "output binary")
	flag.Parse()
	b, err := Load(*manifest)
	if err != nil {
		log.Fatal(err)
	}
	abs, err := filepath.Abs(*out)
	if err != nil {
		log.Fatal(err)
	}
	if err := b.Build(context.Background(), abs); err != nil {
		log.Fatalf("build: %v", err)
	}
	log.Printf("built %s (Caddy %s)", abs, b.CaddyVersion)
}

// Load reads a manifest and resolves relative replacement paths.
func Load(path string) (xcaddy.Builder, error) {
	var b xcaddy.Builder
	raw, err := os.ReadFile(path)
	if err != nil {
		return b, err
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return b, err
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return b, err
	}
	for i, r := range b.Replacements {
		n := string(r.New)
		if strings.HasPrefix(n, ".") {
			b.Replacements[i].New = xcaddy.ReplacementPath(filepath.Join(dir, n))
		}
	}
	return b, nil
}
