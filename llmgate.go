// Package llmgate is an LLM API gateway built as Caddy modules. Importing this
// package (or github.com/llmgate/llmgate/caddymodule, which it imports)
// registers every llmgate module with Caddy.
package llmgate

import _ "github.com/llmgate/llmgate/caddymodule"
