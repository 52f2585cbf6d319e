package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/llmgate/llmgate/auth"
	"github.com/llmgate/llmgate/exchange"
	"github.com/llmgate/llmgate/gateway"
	"github.com/llmgate/llmgate/llmerr"
	"github.com/llmgate/llmgate/storage"
)

// keyView is an API key as the API shows it: never the secret or its hash.
type keyView struct {
	ID        string     `json:"id"`
	Object    string     `json:"object"`
	Prefix    string     `json:"prefix"`
	Owner     string     `json:"owner"`
	Name      string     `json:"name"`
	Scopes    []string   `json:"scopes"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	// Key is the secret, present only in the answer to its creation.
	Key string `json:"key,omitempty"`
}

func viewOf(k storage.APIKey) keyView {
	scopes := k.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	return keyView{ID: k.ID, Object: "api_key", Prefix: k.Prefix + "…", Owner: k.Owner, Name: k.Name, Scopes: scopes, CreatedAt: k.CreatedAt, RevokedAt: k.RevokedAt}
}

func (h *Handler) storeErr(w http.ResponseWriter, err error) {
	h.app.Logger().Error("store call failed", zap.String("error", err.Error()))
	llmerr.Write(w, gateway.StoreUnavailable())
}

func caller(w http.ResponseWriter, r *http.Request) (*exchange.Identity, bool) {
	id := exchange.From(r.Context()).Identity
	if id == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="llmgate"`)
		llmerr.Write(w, llmerr.New(http.StatusUnauthorized, "missing_credentials", "API keys belong to a user; authenticate first"))
		return nil, false
	}
	return id, true
}

func (h *Handler) keysCollection(w http.ResponseWriter, r *http.Request, _ string) {
	id, ok := caller(w, r)
	if !ok {
		return
	}
	if r.Method == http.MethodPost {
		h.createKey(w, r, id)
		return
	}
	owner := id.User
	if u, set := r.URL.Query()["user"]; set || auth.HasRole(id, "admin") {
		if !auth.HasRole(id, "admin") {
			llmerr.Write(w, llmerr.New(http.StatusForbidden, "admin_required", "listing another user's keys needs the admin role"))
			return
		}
		owner = strings.Join(u, "") // empty: every user's
	}
	keys, err := h.app.Store().ListAPIKeys(r.Context(), owner)
	if err != nil {
		h.storeErr(w, err)
		return
	}
	data := make([]keyView, len(keys))
	for i, k := range keys {
		data[i] = viewOf(k)
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

func (h *Handler) createKey(w http.ResponseWriter, r *http.Request, id *exchange.Identity) {
	var req struct {
		Name   string   `json:"name"`
		User   string   `json:"user"`
		Scopes []string `json:"scopes"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil && !errors.Is(err, errEOF) {
		llmerr.Write(w, llmerr.New(http.StatusBadRequest, "invalid_request_error", `body must be {"name":"…","user":"…","scopes":["…"]}`))
		return
	}
	admin := auth.HasRole(id, "admin")
	owner := id.User
	if req.User != "" && req.User != id.User {
		if !admin {
			llmerr.Write(w, llmerr.New(http.StatusForbidden, "admin_required", "creating a key for another user needs the admin role"))
			return
		}
		owner = req.User
	}
	if len(req.Name) > 200 || len(req.Scopes) > 20 {
		llmerr.Write(w, llmerr.New(http.StatusBadRequest, "invalid_request_error", "name or scopes too long"))
		return
	}
	for _, s := range req.Scopes {
		if s == "admin" && !admin {
			llmerr.Write(w, llmerr.New(http.StatusForbidden, "admin_required", "only an admin may create admin keys"))
			return
		}
		if s == "" || strings.ContainsAny(s, ", ") {
			llmerr.Write(w, llmerr.New(http.StatusBadRequest, "invalid_request_error", "scopes must be words").WithParam("scopes"))
			return
		}
	}
	if !admin {
		max := h.MaxKeys
		if max <= 0 {
			max = 10
		}
		keys, err := h.app.Store().ListAPIKeys(r.Context(), owner)
		if err != nil {
			h.storeErr(w, err)
			return
		}
		live := 0
		for _, k := range keys {
			if k.RevokedAt == nil {
				live++
			}
		}
		if live >= max {
			llmerr.Write(w, llmerr.New(http.StatusForbidden, "key_limit_reached", "you already hold the most API keys allowed; revoke one first"))
			return
		}
	}
	rec, secret, err := h.app.Keys().Create(r.Context(), owner, req.Name, req.Scopes)
	if err != nil {
		h.storeErr(w, err)
		return
	}
	v := viewOf(rec)
	v.Key = secret
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, v)
}

func (h *Handler) deleteKey(w http.ResponseWriter, r *http.Request, keyID string) {
	id, ok := caller(w, r)
	if !ok {
		return
	}
	owner := id.User
	if auth.HasRole(id, "admin") {
		owner = "" // any user's
	}
	err := h.app.Keys().Revoke(r.Context(), owner, keyID)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		// Another user's key is as unknown to the caller as a missing one.
		llmerr.Write(w, llmerr.New(http.StatusNotFound, "key_not_found", "no such API key"))
	case err != nil:
		h.storeErr(w, err)
	default:
		writeJSON(w, http.StatusOK, map[string]any{"id": keyID, "object": "api_key", "deleted": true})
	}
}

var errEOF = io.EOF

func callerID(r *http.Request) *exchange.Identity { return exchange.From(r.Context()).Identity }
