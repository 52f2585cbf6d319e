// Package caddymodule registers every llmgate module with Caddy. Importing it
// is the whole install:
//
//	xcaddy build --with github.com/llmgate/llmgate/caddymodule
//
// It brings the `llm` app (package gateway) and the handlers llm_auth,
// llm_api, llm_byok, llm_credits, llm_error, llm_router and llm_upstream, and gives the handlers their
// default Caddyfile order, so a route needs no `order` lines or `route` block.
package caddymodule

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	// The llm app and its handlers register themselves.
	_ "github.com/llmgate/llmgate/gateway"
	_ "github.com/llmgate/llmgate/handlers/api"
	_ "github.com/llmgate/llmgate/handlers/authn"
	_ "github.com/llmgate/llmgate/handlers/byok"
	_ "github.com/llmgate/llmgate/handlers/charge"
	_ "github.com/llmgate/llmgate/handlers/router"
	_ "github.com/llmgate/llmgate/handlers/upstream"
	_ "github.com/llmgate/llmgate/importer"
)

func init() {
	// Each lands just before reverse_proxy, after the ones before it:
	// llm_error, llm_auth, llm_api, llm_byok, llm_router, llm_credits, llm_upstream,
	// reverse_proxy.
	for _, d := range []string{"llm_error", "llm_auth", "llm_api", "llm_byok", "llm_router", "llm_credits", "llm_upstream"} {
		httpcaddyfile.RegisterDirectiveOrder(d, httpcaddyfile.Before, "reverse_proxy")
	}
}
