// Command llmgate is Caddy with the llmgate modules and Caddy's standard
// modules built in: the same binary `xcaddy build --with
// github.com/llmgate/llmgate/caddymodule` produces, runnable straight from a
// checkout with `go run ./cmd/llmgate run --config Caddyfile.example`.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/llmgate/llmgate/caddymodule"
)

func main() {
	caddycmd.Main()
}
