package api

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/llmgate/llmgate/auth"
	"github.com/llmgate/llmgate/gateway"
	"github.com/llmgate/llmgate/llmerr"
	"github.com/llmgate/llmgate/storage"
	"github.com/llmgate/llmgate/vault"
)

// byokView is a stored key as the API shows it: masked, never the key.
type byokView struct {
	ID         string     `json:"id"`
	Object     string     `json:"object"`
	Owner      string     `json:"owner"`
	Provider   string     `json:"provider"`
	Name       string     `json:"name"`
	Masked     string     `json:"masked_key"`
	Status     string     `json:"status"`
	KeyID      string     `json:"key_id"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

func (h *Handler) byokView(k storage.BYOKKey) byokView {
	masked := "…"
	if ring := h.app.Vault(); ring != nil {
		if pt, _, err := ring.Decrypt(k.Owner, k.Provider, k.Ciphertext); err == nil {
			masked = vault.Mask(string(pt))
		}
	}
	return byokView{ID: k.ID, Object: "byok_key", Owner: k.Owner, Provider: k.Provider, Name: k.Name, Masked: masked, Status: k.Status,
		KeyID: k.KeyID, CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt, LastUsedAt: k.LastUsed}
}

func (h *Handler) byokReady(w http.ResponseWriter) bool {
	if h.app.Vault() == nil {
		llmerr.Write(w, gateway.BYOKOff())
		return false
	}
	return true
}

type byokReq struct {
	Provider  *string    `json:"provider"`
	APIKey    *string    `json:"api_key"`
	Name      *string    `json:"name"`
	ExpiresAt *time.Time `json:"expires_at"`
	Verify    bool       `json:"verify"`
}

func decodeBYOK(w http.ResponseWriter, r *http.Request) (byokReq, bool) {
	var req byokReq
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		llmerr.Write(w, llmerr.New(http.StatusBadRequest, "invalid_request_error", `body must be {"provider":"…","api_key":"…","name":"…","expires_at":"RFC 3339","verify":false}`))
		return req, false
	}
	if req.APIKey != nil {
		k := strings.TrimSpace(*req.APIKey)
		if len(k) < 8 || len(k) > 1024 || strings.ContainsAny(k, " \t\r\n") {
			llmerr.Write(w, llmerr.New(http.StatusBadRequest, "invalid_request_error", "api_key must be 8 to 1024 characters without spaces").WithParam("api_key"))
			return req, false
		}
		req.APIKey = &k
	}
	if req.Name != nil && len(*req.Name) > 200 {
		llmerr.Write(w, llmerr.New(http.StatusBadRequest, "invalid_request_error", "name is too long").WithParam("name"))
		return req, false
	}
	return req, true
}

func (h *Handler) byokCollection(w http.ResponseWriter, r *http.Request, _ string) {
	if !h.byokReady(w) {
		return
	}
	if r.Method == http.MethodGet {
		user, admin, ok := subject(w, r)
		if !ok {
			return
		}
		if admin && r.URL.Query().Has("all") {
			user = ""
		}
		ks, err := h.app.Store().ListBYOKKeys(r.Context(), user)
		if err != nil {
			h.storeErr(w, err)
			return
		}
		data := make([]byokView, len(ks))
		for i, k := range ks {
			data[i] = h.byokView(k)
		}
		writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
		return
	}
	id, ok := caller(w, r)
	if !ok {
		return
	}
	if h.app.Tier(id.Tier).Policy() == "never" {
		llmerr.Write(w, llmerr.New(http.StatusForbidden, "byok_not_allowed", "your tier does not allow your own provider keys"))
		return
	}
	req, ok := decodeBYOK(w, r)
	if !ok {
		return
	}
	if req.Provider == nil || req.APIKey == nil {
		llmerr.Write(w, llmerr.New(http.StatusBadRequest, "invalid_request_error", "provider and api_key are required"))
		return
	}
	if _, known := h.app.Provider(*req.Provider); !known {
		llmerr.Write(w, llmerr.New(http.StatusBadRequest, "unknown_provider", "no configured provider is named `"+*req.Provider+"`").WithParam("provider"))
		return
	}
	b := make([]byte, 9)
	_, _ = rand.Read(b)
	k := storage.BYOKKey{ID: "byok_" + base64.RawURLEncoding.EncodeToString(b), Owner: id.User, Provider: *req.Provider,
		Status: "active", ExpiresAt: req.ExpiresAt, CreatedAt: h.app.Now().UTC()}
	if req.Name != nil {
		k.Name = *req.Name
	}
	if req.Verify && !h.verify(r.Context(), *req.Provider, *req.APIKey) {
		k.Status = "invalid"
	}
	k.Ciphertext, k.KeyID = h.app.Vault().Encrypt(k.Owner, k.Provider, []byte(*req.APIKey))
	if err := h.app.Store().PutBYOKKey(r.Context(), k); err != nil {
		h.storeErr(w, err)
		return
	}
	h.app.ForgetUserKeys(r.Context(), k.Owner)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, h.byokView(k))
}

// verify tries a key against the provider's /models with a short timeout.
func (h *Handler) verify(ctx context.Context, provider, key string) bool {
	p, ok := h.app.Provider(provider)
	if !ok || len(p.Deployments()) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return p.CheckKey(ctx, key)
}

func (h *Handler) byokItem(w http.ResponseWriter, r *http.Request, keyID string) {
	if !h.byokReady(w) {
		return
	}
	id, ok := caller(w, r)
	if !ok {
		return
	}
	owner := id.User
	if auth.HasRole(id, "admin") && r.Method == http.MethodDelete {
		owner = "" // an admin may remove anyone's key
	}
	ks, err := h.app.Store().ListBYOKKeys(r.Context(), owner)
	if err != nil {
		h.storeErr(w, err)
		return
	}
	var k *storage.BYOKKey
	for i := range ks {
		if ks[i].ID == keyID {
			k = &ks[i]
		}
	}
	if k == nil {
		// Another user's key is as unknown to the caller as a missing one.
		llmerr.Write(w, llmerr.New(http.StatusNotFound, "key_not_found", "no such key"))
		return
	}
	if r.Method == http.MethodDelete {
		if err := h.app.Store().DeleteBYOKKey(r.Context(), k.Owner, k.ID); err != nil {
			h.storeErr(w, err)
			return
		}
		h.app.ForgetUserKeys(r.Context(), k.Owner)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	req, ok := decodeBYOK(w, r)
	if !ok {
		return
	}
	if req.Provider != nil && *req.Provider != k.Provider {
		llmerr.Write(w, llmerr.New(http.StatusBadRequest, "invalid_request_error", "a key's provider cannot change; add a new key").WithParam("provider"))
		return
	}
	if req.Name != nil {
		k.Name = *req.Name
	}
	if req.ExpiresAt != nil {
		k.ExpiresAt = req.ExpiresAt
	}
	if req.APIKey != nil {
		k.Ciphertext, k.KeyID = h.app.Vault().Encrypt(k.Owner, k.Provider, []byte(*req.APIKey))
		k.Status = "active"
		if req.Verify && !h.verify(r.Context(), k.Provider, *req.APIKey) {
			k.Status = "invalid"
		}
	}
	if err := h.app.Store().PutBYOKKey(r.Context(), *k); err != nil {
		h.storeErr(w, err)
		return
	}
	h.app.ForgetUserKeys(r.Context(), k.Owner)
	writeJSON(w, http.StatusOK, h.byokView(*k))
}
