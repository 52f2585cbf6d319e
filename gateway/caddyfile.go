package gateway

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/dustin/go-humanize"

	"github.com/llmgate/llmgate/catalog"
	"github.com/llmgate/llmgate/credits"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("llm", parseGlobal)
}

// parseGlobal parses the `llm` global option:
//
//	llm {
//	    storage sqlite [<path>]
//	    storage postgres <dsn> {
//	        schema <name>
//	        statement_timeout <duration>
//	        max_conns <n>
//	    }
//	    redis <url> {
//	        prefix <key_prefix>
//	    }
//	    max_body <size>
//	    credits_per_usd <n>
//	    default_tier <name>
//	    hold_ttl <duration>
//	    no_default_tiers
//	    tier <name> {
//	        allowance <credits> [per <month|duration>]
//	        rollover
//	        models <glob...>
//	        max_tokens <n>
//	        rpm <n>
//	        tpm <n>
//	        concurrency <n>
//	        byok [prefer|require] [fee <credits>]
//	        no_byok
//	    }
//	    byok {
//	        key_ring <placeholder>
//	    }
//	    auto {
//	        classifier llm <model> [<timeout>]
//	        context_margin <percent>
//	        category <name> {
//	            models <model...>
//	            temperature <0-2>
//	        }
//	        group <virtual_model> {
//	            policy <quality|cost|latency>
//	            category <name>
//	            delegate <provider>
//	        }
//	    }
//	    lago {
//	        api_url <url>
//	        api_key <placeholder>
//	        metric_code <code>
//	        batch_size <n>
//	        interval <duration>
//	    }
//	    no_builtin_catalog
//	    provider <id> {
//	        api openai
//	        base_url <url>
//	        deployment <url> [<weight>]
//	        api_key <placeholder>
//	        priority <n>
//	        serves_all_models
//	        byok_only
//	        dial_timeout <duration>
//	        first_byte_timeout <duration>
//	        stream_idle_timeout <duration>
//	        max_idle_conns_per_host <n>
//	        breaker {
//	            failures <n>
//	            error_rate <percent>
//	            min_requests <n>
//	            window <duration>
//	            cooldown <duration> [<max_duration>]
//	        }
//	        probe [<interval>] {
//	            interval <duration>
//	            timeout <duration>
//	            path <path>
//	        }
//	    }
//	    model <id> {
//	        alias <name...>
//	        serve <provider> [<upstream_name> [<priority>]]
//	        price <input_per_1M> <output_per_1M>
//	        cache_price <cache_read_per_1M> <cache_write_per_1M>
//	        context <tokens>
//	        max_output <tokens>
//	        capabilities <vision|tools|json|streaming|embedding...>
//	    }
//	}
//
// Prices are decimal credits per one million tokens (1 credit = 1 USD of list
// price by default), stored as integer micro-credits.
func parseGlobal(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	if existing != nil {
		return nil, d.Err("the llm global option may appear only once")
	}
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "llm", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile reads the block of the `llm` global option.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // "llm"
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "max_body":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			n, err := humanize.ParseBytes(s)
			if err != nil || n == 0 || n > 1<<40 {
				return d.Errf("max_body: %q is not a size such as 10MB", s)
			}
			a.MaxBodyBytes = int64(n)
		case "storage":
			sc, err := parseStorage(d)
			if err != nil {
				return err
			}
			a.Storage = sc
		case "redis":
			rc := &RedisConfig{}
			if !d.NextArg() {
				return d.ArgErr()
			}
			rc.URL = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			for n := d.Nesting(); d.NextBlock(n); {
				switch d.Val() {
				case "prefix":
					if !d.AllArgs(&rc.Prefix) {
						return d.ArgErr()
					}
				default:
					return d.Errf("unknown redis option %q", d.Val())
				}
			}
			a.Redis = rc
		case "credits_per_usd":
			v, err := intArg(d)
			if err != nil {
				return err
			}
			if v < 1 {
				return d.Err("credits_per_usd must be at least 1")
			}
			a.CreditsPerUSD = int64(v)
		case "default_tier":
			if !d.AllArgs(&a.DefaultTier) {
				return d.ArgErr()
			}
		case "hold_ttl":
			v, err := durArg(d)
			if err != nil {
				return err
			}
			a.HoldTTL = v
		case "no_default_tiers":
			if d.NextArg() {
				return d.ArgErr()
			}
			a.NoDefaultTiers = true
		case "tier":
			t, err := parseTier(d)
			if err != nil {
				return err
			}
			a.Tiers = append(a.Tiers, t)
		case "byok":
			bc := &BYOKConfig{}
			if d.NextArg() {
				return d.ArgErr()
			}
			for n := d.Nesting(); d.NextBlock(n); {
				switch d.Val() {
				case "key_ring":
					args := d.RemainingArgs()
					if len(args) > 1 {
						return d.ArgErr()
					}
					if len(args) == 1 {
						bc.KeyRing = args[0]
					}
				default:
					return d.Errf("unknown byok option %q", d.Val())
				}
			}
			a.BYOK = bc
		case "auto":
			ac, err := parseAuto(d)
			if err != nil {
				return err
			}
			a.Auto = ac
		case "lago":
			lc := &LagoConfig{}
			if d.NextArg() {
				return d.ArgErr()
			}
			for n := d.Nesting(); d.NextBlock(n); {
				opt := d.Val()
				switch opt {
				case "api_url", "api_key", "metric_code":
					args := d.RemainingArgs()
					if len(args) > 1 {
						return d.ArgErr()
					}
					v := ""
					if len(args) == 1 {
						v = args[0]
					}
					switch opt {
					case "api_url":
						lc.APIURL = v
					case "api_key":
						lc.APIKey = v
					default:
						lc.MetricCode = v
					}
				case "batch_size":
					v, err := intArg(d)
					if err != nil {
						return err
					}
					if v < 1 || v > 100 {
						return d.Err("batch_size must be 1 to 100")
					}
					lc.BatchSize = v
				case "interval":
					v, err := durArg(d)
					if err != nil {
						return err
					}
					lc.Interval = v
				default:
					return d.Errf("unknown lago option %q", opt)
				}
			}
			a.Lago = lc
		case "no_builtin_catalog":
			if d.NextArg() {
				return d.ArgErr()
			}
			a.NoBuiltinCatalog = true
		case "provider":
			p, err := parseProvider(d)
			if err != nil {
				return err
			}
			a.Providers = append(a.Providers, p)
		case "model":
			m, err := parseModel(d)
			if err != nil {
				return err
			}
			a.Models = append(a.Models, m)
		default:
			return d.Errf("unknown llm option %q", d.Val())
		}
	}
	return nil
}

func parseProvider(d *caddyfile.Dispenser) (*ProviderConfig, error) {
	p := &ProviderConfig{}
	if !d.NextArg() {
		return nil, d.Err("provider needs an id")
	}
	p.ID = d.Val()
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		switch opt {
		case "api":
			if !d.AllArgs(&p.API) {
				return nil, d.ArgErr()
			}
		case "base_url":
			// No value (an unset {$VAR}) leaves the provider without a URL:
			// it is skipped with a log line.
			args := d.RemainingArgs()
			if len(args) > 1 {
				return nil, d.ArgErr()
			}
			if len(args) == 1 {
				p.BaseURL = args[0]
			}
		case "api_key":
			// An empty value (a variable that is unset) is kept: the provider
			// is then skipped, as documented, rather than called without a key.
			args := d.RemainingArgs()
			if len(args) > 1 {
				return nil, d.ArgErr()
			}
			v := ""
			if len(args) == 1 {
				v = args[0]
			}
			p.APIKey = &v
		case "deployment":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return nil, d.ArgErr()
			}
			dc := DeploymentConfig{URL: args[0], Weight: 1}
			if len(args) == 2 {
				w, err := strconv.Atoi(args[1])
				if err != nil || w < 1 {
					return nil, d.Errf("deployment weight %q must be a positive integer", args[1])
				}
				dc.Weight = w
			}
			p.Deployments = append(p.Deployments, dc)
		case "priority", "max_idle_conns_per_host":
			n, err := intArg(d)
			if err != nil {
				return nil, err
			}
			if opt == "priority" {
				p.Priority = n
			} else {
				p.MaxIdleConnsPerHost = n
			}
		case "byok_only":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			p.BYOKOnly = true
		case "serves_all_models":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			p.ServesAllModels = true
		case "dial_timeout", "first_byte_timeout", "stream_idle_timeout":
			dur, err := durArg(d)
			if err != nil {
				return nil, err
			}
			switch opt {
			case "dial_timeout":
				p.DialTimeout = dur
			case "first_byte_timeout":
				p.FirstByteTimeout = dur
			default:
				p.StreamIdleTimeout = dur
			}
		case "breaker":
			b, err := parseBreaker(d)
			if err != nil {
				return nil, err
			}
			p.Breaker = b
		case "probe":
			pr := &ProbeConfig{}
			if d.NextArg() {
				dur, err := caddy.ParseDuration(d.Val())
				if err != nil || dur <= 0 {
					return nil, d.Errf("probe interval %q is not a positive duration", d.Val())
				}
				pr.Interval = caddy.Duration(dur)
				if d.NextArg() {
					return nil, d.ArgErr()
				}
			}
			for n := d.Nesting(); d.NextBlock(n); {
				switch d.Val() {
				case "interval", "timeout":
					which := d.Val()
					dur, err := durArg(d)
					if err != nil {
						return nil, err
					}
					if which == "interval" {
						pr.Interval = dur
					} else {
						pr.Timeout = dur
					}
				case "path":
					if !d.AllArgs(&pr.Path) {
						return nil, d.ArgErr()
					}
					if !strings.HasPrefix(pr.Path, "/") {
						return nil, d.Errf("probe path %q must start with /", pr.Path)
					}
				default:
					return nil, d.Errf("unknown probe option %q", d.Val())
				}
			}
			p.Probe = pr
		default:
			return nil, d.Errf("unknown provider option %q", opt)
		}
	}
	return p, nil
}

func parseAuto(d *caddyfile.Dispenser) (*AutoConfig, error) {
	ac := &AutoConfig{Categories: map[string]*CategoryConfig{}, Groups: map[string]*GroupConfig{}}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for n := d.Nesting(); d.NextBlock(n); {
		switch d.Val() {
		case "context_margin":
			var s string
			if !d.AllArgs(&s) {
				return nil, d.ArgErr()
			}
			v, err := strconv.Atoi(strings.TrimSuffix(s, "%"))
			if err != nil || v < 1 || v > 89 {
				return nil, d.Errf("context_margin %q must be a percentage from 1 to 89", s)
			}
			ac.ContextMarginPercent = v
		case "classifier":
			args := d.RemainingArgs()
			if len(args) < 2 || args[0] != "llm" || len(args) > 3 {
				return nil, d.Err("classifier llm <model> [<timeout>]")
			}
			c := &ClassifierConfig{Model: args[1]}
			if len(args) == 3 {
				v, err := caddy.ParseDuration(args[2])
				if err != nil || v <= 0 {
					return nil, d.Errf("classifier timeout %q is not a positive duration", args[2])
				}
				c.Timeout = caddy.Duration(v)
			}
			ac.Classifier = c
		case "category":
			if !d.NextArg() {
				return nil, d.Err("category needs a name")
			}
			name, c := d.Val(), &CategoryConfig{}
			for m := d.Nesting(); d.NextBlock(m); {
				switch d.Val() {
				case "models":
					c.Models = d.RemainingArgs()
					if len(c.Models) == 0 {
						return nil, d.ArgErr()
					}
				case "temperature":
					var s string
					if !d.AllArgs(&s) {
						return nil, d.ArgErr()
					}
					v, err := strconv.ParseFloat(s, 64)
					if err != nil || v < 0 || v > 2 {
						return nil, d.Errf("temperature %q must be a number from 0 to 2", s)
					}
					c.Temperature = &v
				default:
					return nil, d.Errf("unknown category option %q", d.Val())
				}
			}
			ac.Categories[name] = c
		case "group":
			if !d.NextArg() {
				return nil, d.Err("group needs a name (the virtual model clients ask for)")
			}
			name, g := d.Val(), &GroupConfig{}
			for m := d.Nesting(); d.NextBlock(m); {
				switch d.Val() {
				case "policy":
					if !d.AllArgs(&g.Policy) {
						return nil, d.ArgErr()
					}
					if g.Policy != "quality" && g.Policy != "cost" && g.Policy != "latency" {
						return nil, d.Errf("policy %q must be quality, cost or latency", g.Policy)
					}
				case "category":
					if !d.AllArgs(&g.Category) {
						return nil, d.ArgErr()
					}
				case "delegate":
					if !d.AllArgs(&g.Delegate) {
						return nil, d.ArgErr()
					}
				default:
					return nil, d.Errf("unknown group option %q", d.Val())
				}
			}
			ac.Groups[name] = g
		default:
			return nil, d.Errf("unknown auto option %q", d.Val())
		}
	}
	return ac, nil
}

func parseTier(d *caddyfile.Dispenser) (credits.Tier, error) {
	var t credits.Tier
	if !d.NextArg() {
		return t, d.Err("tier needs a name")
	}
	t.Name = d.Val()
	if d.NextArg() {
		return t, d.ArgErr()
	}
	for n := d.Nesting(); d.NextBlock(n); {
		opt := d.Val()
		switch opt {
		case "allowance":
			args := d.RemainingArgs()
			if len(args) != 1 && !(len(args) == 3 && args[1] == "per") {
				return t, d.Err("allowance <credits> [per <month|duration>]")
			}
			v, err := catalog.ParseMicros(args[0])
			if err != nil {
				return t, d.Errf("allowance: %v", err)
			}
			t.AllowanceMicros = v
			if len(args) == 3 {
				t.Period = args[2]
			}
		case "rollover":
			if d.NextArg() {
				return t, d.ArgErr()
			}
			t.Rollover = true
		case "models":
			t.Models = d.RemainingArgs()
			if len(t.Models) == 0 {
				return t, d.ArgErr()
			}
		case "max_tokens", "rpm", "tpm", "concurrency":
			v, err := intArg(d)
			if err != nil {
				return t, err
			}
			switch opt {
			case "max_tokens":
				t.MaxTokens = int64(v)
			case "rpm":
				t.RPM = int64(v)
			case "tpm":
				t.TPM = int64(v)
			default:
				t.Concurrency = int64(v)
			}
		case "byok":
			t.BYOK = true
			args := d.RemainingArgs()
			if len(args) > 0 && (args[0] == "prefer" || args[0] == "require") {
				t.BYOKPolicy, args = args[0], args[1:]
			}
			if len(args) == 2 && args[0] == "fee" {
				v, err := catalog.ParseMicros(args[1])
				if err != nil {
					return t, d.Errf("byok fee: %v", err)
				}
				t.BYOKFeeMicros = v
			} else if len(args) != 0 {
				return t, d.Err("byok [prefer|require] [fee <credits>]")
			}
		case "no_byok":
			t.BYOK = false
		default:
			return t, d.Errf("unknown tier option %q", opt)
		}
	}
	if err := t.Validate(); err != nil {
		return t, d.Err(err.Error())
	}
	return t, nil
}

func parseStorage(d *caddyfile.Dispenser) (*StorageConfig, error) {
	sc := &StorageConfig{}
	if !d.NextArg() {
		return nil, d.Err("storage needs a backend: sqlite [<path>] or postgres <dsn>")
	}
	sc.Backend = d.Val()
	switch sc.Backend {
	case "sqlite":
		if d.NextArg() {
			sc.Path = d.Val()
		}
	case "postgres":
		if !d.NextArg() {
			return nil, d.Err("storage postgres needs a DSN, such as {env.LLM_DATABASE_URL}")
		}
		sc.DSN = d.Val()
	default:
		return nil, d.Errf("storage backend %q is not supported (sqlite or postgres)", sc.Backend)
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for n := d.Nesting(); d.NextBlock(n); {
		opt := d.Val()
		if sc.Backend != "postgres" {
			return nil, d.Errf("storage sqlite takes no options (got %q)", opt)
		}
		switch opt {
		case "schema":
			if !d.AllArgs(&sc.Schema) {
				return nil, d.ArgErr()
			}
		case "statement_timeout":
			v, err := durArg(d)
			if err != nil {
				return nil, err
			}
			sc.StatementTimeout = v
		case "max_conns":
			v, err := intArg(d)
			if err != nil {
				return nil, err
			}
			sc.MaxConns = int32(v)
		default:
			return nil, d.Errf("unknown storage option %q", opt)
		}
	}
	return sc, nil
}

func parseBreaker(d *caddyfile.Dispenser) (*BreakerConfig, error) {
	b := &BreakerConfig{}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for n := d.Nesting(); d.NextBlock(n); {
		opt := d.Val()
		switch opt {
		case "failures", "min_requests":
			v, err := intArg(d)
			if err != nil {
				return nil, err
			}
			if v < 1 {
				return nil, d.Errf("%s must be at least 1", opt)
			}
			if opt == "failures" {
				b.Failures = v
			} else {
				b.MinRequests = v
			}
		case "error_rate":
			var s string
			if !d.AllArgs(&s) {
				return nil, d.ArgErr()
			}
			v, err := strconv.Atoi(strings.TrimSuffix(s, "%"))
			if err != nil || v < 1 || v > 100 {
				return nil, d.Errf("error_rate %q must be a percentage from 1 to 100", s)
			}
			b.ErrorRatePercent = v
		case "window":
			v, err := durArg(d)
			if err != nil {
				return nil, err
			}
			b.Window = v
		case "cooldown":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return nil, d.ArgErr()
			}
			for i, s := range args {
				v, err := caddy.ParseDuration(s)
				if err != nil || v <= 0 {
					return nil, d.Errf("cooldown %q is not a positive duration", s)
				}
				if i == 0 {
					b.Cooldown = caddy.Duration(v)
				} else {
					b.MaxCooldown = caddy.Duration(v)
				}
			}
		default:
			return nil, d.Errf("unknown breaker option %q", opt)
		}
	}
	return b, nil
}

func parseModel(d *caddyfile.Dispenser) (catalog.Model, error) {
	var m catalog.Model
	if !d.NextArg() {
		return m, d.Err("model needs an id")
	}
	m.ID = d.Val()
	if d.NextArg() {
		return m, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		switch opt {
		case "alias":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return m, d.ArgErr()
			}
			m.Aliases = append(m.Aliases, args...)
		case "serve":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 3 {
				return m, d.ArgErr()
			}
			s := catalog.Serve{Provider: args[0]}
			if len(args) > 1 {
				s.Upstream = args[1]
			}
			if len(args) > 2 {
				p, err := strconv.Atoi(args[2])
				if err != nil || p < 1 {
					return m, d.Errf("serve priority %q must be a positive integer", args[2])
				}
				s.Priority = p
			}
			m.Serve = append(m.Serve, s)
		case "price":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return m, d.Err("price takes two amounts: input and output credits per 1M tokens")
			}
			in, err := catalog.ParseMicros(args[0])
			if err != nil {
				return m, d.Errf("price: %v", err)
			}
			out, err := catalog.ParseMicros(args[1])
			if err != nil {
				return m, d.Errf("price: %v", err)
			}
			m.InputMicrosPerMTok, m.OutputMicrosPerMTok = in, out
		case "cache_price":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return m, d.Err("cache_price takes two amounts: cache read and cache write credits per 1M tokens")
			}
			r, err := catalog.ParseMicros(args[0])
			if err != nil {
				return m, d.Errf("cache_price: %v", err)
			}
			wr, err := catalog.ParseMicros(args[1])
			if err != nil {
				return m, d.Errf("cache_price: %v", err)
			}
			m.CacheReadMicrosPerMTok, m.CacheWriteMicrosPerMTok = r, wr
		case "context", "max_output":
			v, err := intArg(d)
			if err != nil {
				return m, err
			}
			if v < 1 {
				return m, d.Errf("%s must be positive", opt)
			}
			if opt == "context" {
				m.ContextWindow = int64(v)
			} else {
				m.MaxOutputTokens = int64(v)
			}
		case "capabilities":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return m, d.ArgErr()
			}
			m.Capabilities = args
		default:
			return m, d.Errf("unknown model option %q", opt)
		}
	}
	if err := m.Validate(); err != nil {
		return m, d.Err(err.Error())
	}
	return m, nil
}

func intArg(d *caddyfile.Dispenser) (int, error) {
	opt := d.Val()
	var s string
	if !d.AllArgs(&s) {
		return 0, d.ArgErr()
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		return 0, d.Errf("%s: %q is not a non-negative integer", opt, s)
	}
	return v, nil
}

func durArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	opt := d.Val()
	var s string
	if !d.AllArgs(&s) {
		return 0, d.ArgErr()
	}
	v, err := caddy.ParseDuration(s)
	if err != nil || v <= 0 {
		return 0, d.Errf("%s: %q is not a positive duration", opt, s)
	}
	return caddy.Duration(v), nil
}
