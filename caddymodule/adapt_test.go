package caddymodule_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// TestCaddyfileAdapt adapts every testdata/caddyfile_adapt/*.caddyfiletest
// (a Caddyfile, a line of dashes, the JSON it must become) and compares.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("../testdata/caddyfile_adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no adapt tests found: %v", err)
	}
	dashes := regexp.MustCompile(`(?m)^-{4,}\s*$`)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			parts := dashes.Split(string(b), 2)
			if len(parts) != 2 {
				t.Fatal("no line of dashes")
			}
			if !caddytest.CompareAdapt(t, f, parts[0], "caddyfile", strings.TrimSpace(parts[1])) {
				t.Fail()
			}
		})
	}
}

// TestBadCaddyfiles: every mistake fails to adapt (or to provision) with a
// message that names it.
func TestBadCaddyfiles(t *testing.T) {
	wrap := func(llm string) string { return "{\n\tllm {\n" + llm + "\n\t}\n}\n:8084\n" }
	adaptCases := []struct{ name, cf, want string }{
		{"unknown option", wrap("frobnicate"), `unknown llm option "frobnicate"`},
		{"provider without id", wrap("provider {\n}"), "provider needs an id"},
		{"unknown provider option", wrap("provider p {\nbogus 1\n}"), `unknown provider option "bogus"`},
		{"bad weight", wrap("provider p {\ndeployment http://x 0\n}"), "weight"},
		{"bad duration", wrap("provider p {\nfirst_byte_timeout soon\n}"), "first_byte_timeout"},
		{"bad error rate", wrap("provider p {\nbreaker {\nerror_rate 150%\n}\n}"), "error_rate"},
		{"bad probe path", wrap("provider p {\nprobe {\npath models\n}\n}"), "must start with /"},
		{"bad price", wrap("model m {\nprice 1.5\n}"), "price takes two amounts"},
		{"float price precision", wrap("model m {\nprice 0.0000001 1\n}"), "more than 6 decimal places"},
		{"negative price", wrap("model m {\nprice -1 1\n}"), "negative"},
		{"unknown capability", wrap("model m {\ncapabilities telepathy\n}"), "unknown capability"},
		{"bad max_body", wrap("max_body lots"), "max_body"},
		{"storage without backend", wrap("storage"), "storage needs a backend"},
		{"storage unknown backend", wrap("storage mongo x"), `storage backend "mongo" is not supported`},
		{"postgres without dsn", wrap("storage postgres"), "needs a DSN"},
		{"sqlite options", wrap("storage sqlite /x.db {\nschema s\n}"), "takes no options"},
		{"redis without url", wrap("redis"), "wrong argument count"},
		{"auth option", "{\n\tllm\n}\n:8084 {\n\tllm_auth {\n\t\tmagic\n\t}\n}\n", `unknown llm_auth option "magic"`},
		{"jwt option", "{\n\tllm\n}\n:8084 {\n\tllm_auth {\n\t\tjwt {\n\t\t\tkid x\n\t\t}\n\t}\n}\n", `unknown jwt option "kid"`},
		{"leeway too long", "{\n\tllm\n}\n:8084 {\n\tllm_auth {\n\t\tjwt {\n\t\t\tleeway 5m\n\t\t}\n\t}\n}\n", "at most 60s"},
		{"max_keys", "{\n\tllm\n}\n:8084 {\n\tllm_api {\n\t\tmax_keys none\n\t}\n}\n", "max_keys"},
		{"tier without name", wrap("tier"), "tier needs a name"},
		{"tier bad allowance", wrap("tier t {\nallowance lots\n}"), "allowance"},
		{"tier bad period", wrap("tier t {\nallowance 1 per fortnight\n}"), "period"},
		{"tier bad glob", wrap("tier t {\nmodels [\n}"), "bad model glob"},
		{"tier option", wrap("tier t {\nvip\n}"), `unknown tier option "vip"`},
		{"credits_per_usd", wrap("credits_per_usd 0"), "at least 1"},
		{"lago option", wrap("lago {\nsecret x\n}"), `unknown lago option "secret"`},
		{"lago batch", wrap("lago {\nbatch_size 500\n}"), "batch_size"},
		{"credits args", "{\n\tllm\n}\n:8084 {\n\tllm_credits now\n}\n", "takes no options"},
		{"auto option", wrap("auto {\nmagic\n}"), `unknown auto option "magic"`},
		{"auto policy", wrap("auto {\ngroup g {\npolicy random\n}\n}"), "must be quality, cost or latency"},
		{"auto temperature", wrap("auto {\ncategory c {\ntemperature hot\n}\n}"), "temperature"},
		{"auto classifier", wrap("auto {\nclassifier magic\n}"), "classifier llm <model>"},
		{"twice", "{\n\tllm\n\tllm\n}\n:8084\n", "only once"},
		{"router option", "{\n\tllm\n}\n:8084 {\n\tllm_router {\n\t\tfast\n\t}\n}\n", `unknown llm_router option "fast"`},
		{"upstream arg", "{\n\tllm\n}\n:8084 {\n\tllm_upstream somewhere\n}\n", "wrong argument count"},
		{"api option", "{\n\tllm\n}\n:8084 {\n\tllm_api {\n\t\topen\n\t}\n}\n", `unknown llm_api option "open"`},
		{"error arg", "{\n\tllm\n}\n:8084 {\n\tllm_error 404\n}\n", "takes no arguments"},
	}
	adapter := caddyconfig.GetAdapter("caddyfile")
	for _, c := range adaptCases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := adapter.Adapt([]byte(c.cf), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want error containing %q, got %v", c.want, err)
			}
		})
	}
	// Mistakes only provisioning can see.
	provisionCases := []struct{ name, cf, want string }{
		{"unsupported api", wrap("provider p {\napi soap\nbase_url http://x\n}"), `api "soap" is not supported`},
		{"relative url", wrap("provider p {\nbase_url /v1\n}"), "absolute http(s) URL"},
		{"duplicate provider", wrap("provider p {\nbase_url http://x\n}\nprovider p {\nbase_url http://y\n}"), "configured twice"},
		{"duplicate alias", wrap("model a {\nalias x\n}\nmodel b {\nalias x\n}"), `"x" is used by both`},
		{"bad postgres dsn", wrap("storage postgres \"postgres://u:pw-secret@h:notaport/db\""), "does not parse"},
		{"bad redis url", wrap("redis \"redis://:pw-secret@h:notaport\""), "does not parse"},
		{"short jwt secret", "{\n\tllm\n}\n:8084 {\n\tllm_auth {\n\t\tjwt {\n\t\t\tsecret tooshort\n\t\t}\n\t}\n}\n", "at least 32 bytes"},
		{"hs256 without secret", "{\n\tllm\n}\n:8084 {\n\tllm_auth {\n\t\tjwt {\n\t\t\tjwks http://127.0.0.1:1/jwks\n\t\t\talgorithms HS256\n\t\t}\n\t}\n}\n", "needs a shared secret"},
		{"short admin key", "{\n\tllm\n}\n:8084 {\n\tllm_auth {\n\t\tadmin_key abc\n\t}\n}\n", "at least 16 characters"},
		{"missing pem", "{\n\tllm\n}\n:8084 {\n\tllm_auth {\n\t\tjwt {\n\t\t\tpublic_key_file /nonexistent.pem\n\t\t}\n\t}\n}\n", "public key file"},
		{"unknown default tier", wrap("default_tier gold"), `default_tier "gold" is not a configured tier`},
		{"lago bad url", wrap("lago {\napi_url ftp://x\napi_key k\n}"), "http(s) URL"},
		{"group unknown category", wrap("auto {\ngroup g {\ncategory poetry\n}\n}"), `unknown category "poetry"`},
		{"group delegate unknown", wrap("auto {\ngroup g {\ndelegate nowhere\n}\n}"), `unknown provider "nowhere"`},
		{"classifier model unknown", wrap("no_builtin_catalog\nauto {\nclassifier llm nope\n}"), `classifier model "nope"`},
		{"handler without app", ":8084 {\n\tllm_router\n}\n", "llm app"},
	}
	for _, c := range provisionCases {
		t.Run(c.name, func(t *testing.T) {
			cfg, _, err := adapter.Adapt([]byte(c.cf), nil)
			if err == nil {
				err = caddy.Validate(mustConfig(t, cfg))
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want error containing %q, got %v", c.want, err)
			}
			if strings.Contains(err.Error(), "pw-secret") {
				t.Fatalf("a password in the error: %v", err)
			}
		})
	}
}

// TestExampleCaddyfileLoads: the file users copy adapts and provisions.
func TestExampleCaddyfileLoads(t *testing.T) {
	b, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("OPENAI_API_KEY", "sk-test")
	cfg, warn, err := caddyconfig.GetAdapter("caddyfile").Adapt(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range warn {
		t.Errorf("warning: %s", w.String())
	}
	if strings.Contains(string(cfg), "sk-test") {
		t.Fatal("the key was baked into the adapted JSON")
	}
	if err := caddy.Validate(mustConfig(t, cfg)); err != nil {
		t.Fatal(err)
	}
}

func mustConfig(t *testing.T, raw []byte) *caddy.Config {
	t.Helper()
	var cfg caddy.Config
	if err := caddyJSONUnmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	return &cfg
}

func caddyJSONUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
