// Package authn is the llm_auth handler: it recognises the caller by a
// gateway API key (Authorization: Bearer sk-llm-… or x-api-key) or a JWT,
// puts the identity in the exchange, and refuses everyone else with an
// OpenAI-shaped 401.
//
// It is a handler of its own rather than a provider for Caddy's standard
// `authentication` handler: that handler answers refusals itself, without the
// OpenAI error codes (invalid_api_key, invalid_token, token_expired) and the
// WWW-Authenticate details SDKs and operators rely on, and its user model has
// no place for org, tier and roles. llm_auth still sets
// {http.auth.user.id}, so Caddy's own logs and matchers see the user.
package authn

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/auth"
	"github.com/llmgate/llmgate/exchange"
	"github.com/llmgate/llmgate/gateway"
	"github.com/llmgate/llmgate/llmerr"
	"github.com/llmgate/llmgate/storage"
)

func init() {
	caddy.RegisterModule(&Handler{})
	httpcaddyfile.RegisterHandlerDirective("llm_auth", parseCaddyfile)
}

// JWT configures token verification; every string may be a placeholder.
type JWT struct {
	// Secret enables HS256 (at least 32 bytes), e.g. {env.LLM_JWT_SECRET}.
	Secret string `json:"secret,omitempty"`
	// PublicKeyFiles are PEM files of RSA, ECDSA or Ed25519 public keys.
	PublicKeyFiles []string `json:"public_key_files,omitempty"`
	// JWKSURL, e.g. {env.LLM_JWKS_URL}: refreshed periodically; a kid not in
	// the set triggers at most one refetch per unknown_kid_interval.
	JWKSURL            string         `json:"jwks_url,omitempty"`
	JWKSRefresh        caddy.Duration `json:"jwks_refresh,omitempty"`
	UnknownKIDInterval caddy.Duration `json:"unknown_kid_interval,omitempty"`
	// Algorithms accepted (pinned); default HS256 with a secret, RS256,
	// ES256 and EdDSA with keys.
	Algorithms []string `json:"algorithms,omitempty"`
	Issuer     string   `json:"issuer,omitempty"`
	Audience   string   `json:"audience,omitempty"`
	// Leeway for exp and nbf, at most 60s (default 0).
	Leeway caddy.Duration `json:"leeway,omitempty"`
	// Claim paths, dotted for nested claims: user (default sub), org, tier,
	// roles (Keycloak: realm_access.roles).
	UserClaim  string `json:"user_claim,omitempty"`
	OrgClaim   string `json:"org_claim,omitempty"`
	TierClaim  string `json:"tier_claim,omitempty"`
	RolesClaim string `json:"roles_claim,omitempty"`
}

// Handler is http.handlers.llm_auth.
type Handler struct {
	JWT *JWT `json:"jwt,omitempty"`
	// AdminKey is a bootstrap admin credential, e.g. {env.LLM_ADMIN_API_KEY},
	// so a fresh install can be administered. Empty: none.
	AdminKey string `json:"admin_key,omitempty"`
	// DisableAPIKeys refuses gateway API keys (JWTs only).
	DisableAPIKeys bool `json:"disable_api_keys,omitempty"`
	// DefaultTier for callers whose token or user record names none
	// (default: the llm app's default_tier).
	DefaultTier string `json:"default_tier,omitempty"`
	// AdminRole is the role that grants the admin endpoints (default admin).
	AdminRole string `json:"admin_role,omitempty"`

	app      *gateway.App
	verifier *auth.Verifier
	adminKey string
	logger   *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (*Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.llm_auth", New: func() caddy.Module { return new(Handler) }}
}

// Provision resolves secrets and builds the verifier.
func (h *Handler) Provision(ctx caddy.Context) error {
	app, err := gateway.FromContext(ctx)
	if err != nil {
		return err
	}
	h.app, h.logger = app, ctx.Logger()
	if h.DefaultTier == "" {
		h.DefaultTier = app.DefaultTier
	}
	if h.AdminRole == "" {
		h.AdminRole = "admin"
	}
	repl := caddy.NewReplacer()
	h.adminKey = strings.TrimSpace(repl.ReplaceKnown(h.AdminKey, ""))
	if h.adminKey != "" && len(h.adminKey) < 16 {
		return errors.New("llm_auth: admin_key must be at least 16 characters")
	}
	if j := h.JWT; j != nil {
		c := auth.JWTConfig{
			Secret:  strings.TrimSpace(repl.ReplaceKnown(j.Secret, "")),
			JWKSURL: strings.TrimSpace(repl.ReplaceKnown(j.JWKSURL, "")),
			Issuer:  repl.ReplaceKnown(j.Issuer, ""), Audience: repl.ReplaceKnown(j.Audience, ""),
			Algorithms: j.Algorithms, Leeway: time.Duration(j.Leeway),
			JWKSRefresh: time.Duration(j.JWKSRefresh), UnknownKIDInterval: time.Duration(j.UnknownKIDInterval),
			UserClaim: j.UserClaim, OrgClaim: j.OrgClaim, TierClaim: j.TierClaim, RolesClaim: j.RolesClaim,
			DefaultTier: h.DefaultTier,
		}
		for _, f := range j.PublicKeyFiles {
			f = repl.ReplaceKnown(f, "")
			if f == "" {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				return fmt.Errorf("llm_auth: public key file: %w", err)
			}
			c.PublicKeys = append(c.PublicKeys, b)
		}
		if c.Secret == "" && c.JWKSURL == "" && len(c.PublicKeys) == 0 {
			h.logger.Info("JWT verification off: no secret, public key or JWKS URL is set")
		} else {
			v, err := auth.NewVerifier(ctx, c)
			if err != nil {
				return fmt.Errorf("llm_auth: %w", err)
			}
			h.verifier = v
		}
	}
	if h.verifier == nil && h.adminKey == "" && h.DisableAPIKeys {
		return errors.New("llm_auth: nothing could authenticate: no JWT keys, no admin key, and API keys disabled")
	}
	return nil
}

// ServeHTTP authenticates the request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	x, r := exchange.Attach(r)
	cred, kind := auth.Extract(r.Header)
	// The caller's credential goes no further: not upstream, not into logs.
	r.Header.Del("X-Api-Key")
	id, e := h.identify(r.Context(), cred, kind)
	if e != nil {
		if e.Status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="llmgate", error="invalid_token"`)
		}
		llmerr.Write(w, e)
		return nil
	}
	if h.AdminRole != "admin" && auth.HasRole(id, h.AdminRole) && !auth.HasRole(id, "admin") {
		id.Roles = append(id.Roles, "admin")
	}
	x.Identity = id
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.user.id", id.User)
	}
	return next.ServeHTTP(w, r)
}

func unauthorized(code, msg string) *llmerr.Error {
	return llmerr.New(http.StatusUnauthorized, code, msg)
}

func (h *Handler) identify(ctx context.Context, cred string, kind auth.Kind) (*exchange.Identity, *llmerr.Error) {
	switch kind {
	case auth.None:
		return nil, unauthorized("missing_credentials", "no credentials: send Authorization: Bearer <API key or token>, or x-api-key")
	case auth.Malformed:
		return nil, unauthorized("invalid_api_key", "the credential is malformed")
	case auth.JWT:
		if h.verifier == nil {
			return nil, unauthorized("invalid_token", "tokens are not accepted here; use an API key")
		}
		id, err := h.verifier.Verify(ctx, cred)
		if err != nil {
			var te *auth.TokenError
			if errors.As(err, &te) {
				return nil, unauthorized(te.Code, te.Msg)
			}
			return nil, unauthorized("invalid_token", "the token is not valid")
		}
		return id, nil
	}
	if h.adminKey != "" && auth.EqualSecret(cred, h.adminKey) {
		return &exchange.Identity{User: "admin", Tier: h.DefaultTier, KeyID: "bootstrap", Roles: []string{"admin"}}, nil
	}
	if h.DisableAPIKeys {
		return nil, unauthorized("invalid_api_key", "API keys are not accepted here")
	}
	if !strings.HasPrefix(cred, auth.APIKeyPrefix) {
		return nil, unauthorized("invalid_api_key", "invalid API key")
	}
	if e := h.app.StoreReady(); e != nil {
		return nil, e
	}
	key, err := h.app.Keys().Lookup(ctx, auth.HashKey(cred))
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, unauthorized("invalid_api_key", "invalid API key")
	case errors.Is(err, auth.ErrRevoked):
		return nil, unauthorized("invalid_api_key", "this API key has been revoked")
	case err != nil:
		h.logger.Error("API key lookup failed", zap.String("error", err.Error()))
		return nil, gateway.StoreUnavailable()
	}
	id := &exchange.Identity{User: key.Owner, KeyID: key.ID, Roles: key.Scopes, Tier: h.DefaultTier}
	if u, err := h.app.Keys().User(ctx, key.Owner); err == nil {
		id.Org = u.Org
		if u.Tier != "" {
			id.Tier = u.Tier
		}
	}
	return id, nil
}

// parseCaddyfile sets up the handler from Caddyfile tokens:
//
//	llm_auth {
//	    admin_key <placeholder>
//	    default_tier <tier>
//	    admin_role <role>
//	    no_api_keys
//	    jwt {
//	        secret <placeholder>
//	        public_key_file <path>
//	        jwks <url> {
//	            refresh <duration>
//	            unknown_kid_interval <duration>
//	        }
//	        algorithms <alg...>
//	        issuer <iss>
//	        audience <aud>
//	        leeway <duration>
//	        user_claim <path>
//	        org_claim <path>
//	        tier_claim <path>
//	        roles_claim <path>
//	    }
//	}
func parseCaddyfile(hc httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	h := new(Handler)
	return h, h.UnmarshalCaddyfile(hc.Dispenser)
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	// optional reads one argument; an unset {$VAR} leaves none, which is kept
	// as empty (the feature is then off).
	optional := func() (string, error) {
		args := d.RemainingArgs()
		if len(args) > 1 {
			return "", d.ArgErr()
		}
		if len(args) == 0 {
			return "", nil
		}
		return args[0], nil
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "admin_key":
			v, err := optional()
			if err != nil {
				return err
			}
			h.AdminKey = v
		case "default_tier":
			if !d.AllArgs(&h.DefaultTier) {
				return d.ArgErr()
			}
		case "admin_role":
			if !d.AllArgs(&h.AdminRole) {
				return d.ArgErr()
			}
		case "no_api_keys":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.DisableAPIKeys = true
		case "jwt":
			j := &JWT{}
			if d.NextArg() {
				return d.ArgErr()
			}
			// Options that take one (possibly empty) placeholder value.
			values := map[string]*string{"secret": &j.Secret, "issuer": &j.Issuer, "audience": &j.Audience,
				"user_claim": &j.UserClaim, "org_claim": &j.OrgClaim, "tier_claim": &j.TierClaim, "roles_claim": &j.RolesClaim}
			for n := d.Nesting(); d.NextBlock(n); {
				opt := d.Val()
				switch field := values[opt]; {
				case field != nil:
					v, err := optional()
					if err != nil {
						return err
					}
					*field = v
				case opt == "public_key_file":
					v, err := optional()
					if err != nil {
						return err
					}
					if v != "" {
						j.PublicKeyFiles = append(j.PublicKeyFiles, v)
					}
				case opt == "jwks":
					v, err := optional()
					if err != nil {
						return err
					}
					j.JWKSURL = v
					for m := d.Nesting(); d.NextBlock(m); {
						which := d.Val()
						var s string
						if !d.AllArgs(&s) {
							return d.ArgErr()
						}
						dur, err := caddy.ParseDuration(s)
						if err != nil || dur <= 0 {
							return d.Errf("%s: %q is not a positive duration", which, s)
						}
						switch which {
						case "refresh":
							j.JWKSRefresh = caddy.Duration(dur)
						case "unknown_kid_interval":
							j.UnknownKIDInterval = caddy.Duration(dur)
						default:
							return d.Errf("unknown jwks option %q", which)
						}
					}
				case opt == "algorithms":
					j.Algorithms = d.RemainingArgs()
					if len(j.Algorithms) == 0 {
						return d.ArgErr()
					}
				case opt == "leeway":
					var s string
					if !d.AllArgs(&s) {
						return d.ArgErr()
					}
					dur, err := caddy.ParseDuration(s)
					if err != nil || dur < 0 || dur > time.Minute {
						return d.Errf("leeway %q must be a duration of at most 60s", s)
					}
					j.Leeway = caddy.Duration(dur)
				default:
					return d.Errf("unknown jwt option %q", opt)
				}
			}
			h.JWT = j
		default:
			return d.Errf("unknown llm_auth option %q", d.Val())
		}
	}
	return nil
}

var (
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
