package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/llmgate/llmgate/auth"
	"github.com/llmgate/llmgate/catalog"
	"github.com/llmgate/llmgate/llmerr"
	"github.com/llmgate/llmgate/storage"
)

// subject is whose data a request is about: the caller, or for an admin the
// ?user= they name.
func subject(w http.ResponseWriter, r *http.Request) (user string, admin, ok bool) {
	id, ok := caller(w, r)
	if !ok {
		return "", false, false
	}
	admin = auth.HasRole(id, "admin")
	if u := r.URL.Query().Get("user"); u != "" && u != id.User {
		if !admin {
			llmerr.Write(w, llmerr.New(http.StatusForbidden, "admin_required", "reading another user's data needs the admin role"))
			return "", admin, false
		}
		return u, admin, true
	}
	return id.User, admin, true
}

func (h *Handler) credits(w http.ResponseWriter, r *http.Request, _ string) {
	user, _, ok := subject(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	tierName := ""
	if u, err := h.app.Keys().User(ctx, user); err == nil {
		tierName = u.Tier
	}
	if id := callerID(r); id != nil && id.User == user && id.Tier != "" {
		tierName = id.Tier
	}
	tier := h.app.Tier(tierName)
	now := h.app.Now()
	if err := h.app.EnsureAllowance(ctx, user, tier, now); err != nil {
		h.storeErr(w, err)
		return
	}
	start, end := tier.PeriodOf(now)
	b, err := h.app.Store().GetBalance(ctx, user)
	if err != nil {
		h.storeErr(w, err)
		return
	}
	spent, err := h.app.Store().SpentSince(ctx, user, start, end)
	if err != nil {
		h.storeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"object": "credits", "user": user, "tier": tier.Name,
		"balance_micros": b.BalanceMicros, "balance": catalog.FormatMicros(b.BalanceMicros),
		"held_micros": b.HeldMicros, "available_micros": b.Available(),
		"allowance_micros": tier.AllowanceMicros, "used_this_period_micros": spent,
		"period_started_at": start, "period_resets_at": end,
	})
}

func (h *Handler) addCredits(w http.ResponseWriter, r *http.Request, _ string) {
	if !requireAdmin(w, r, "adding credits") {
		return
	}
	var req struct {
		User           string `json:"user"`
		AmountMicros   *int64 `json:"amount_micros"`
		IdempotencyKey string `json:"idempotency_key"`
		Reason         string `json:"reason"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<10))
	dec.DisallowUnknownFields()
	bad := func(param, msg string) {
		llmerr.Write(w, llmerr.New(http.StatusBadRequest, "invalid_request_error", msg).WithParam(param))
	}
	if err := dec.Decode(&req); err != nil {
		bad("", `body must be {"user":"…","amount_micros":<integer>,"idempotency_key":"…","reason":"…"}`)
		return
	}
	switch {
	case req.User == "":
		bad("user", "user is required")
		return
	case req.AmountMicros == nil || *req.AmountMicros == 0:
		bad("amount_micros", "amount_micros must be a non-zero integer (micro-credits)")
		return
	case req.IdempotencyKey == "" || len(req.IdempotencyKey) > 200:
		bad("idempotency_key", "idempotency_key is required (at most 200 characters): the same key adds credits once")
		return
	case *req.AmountMicros < 0 && req.Reason == "":
		bad("reason", "a negative amount is an adjustment and needs a reason")
		return
	}
	kind := storage.KindPurchase
	if *req.AmountMicros < 0 {
		kind = storage.KindAdjust
	}
	e, created, err := h.app.Store().AddCredits(r.Context(), storage.LedgerEntry{User: req.User, AmountMicros: *req.AmountMicros,
		Kind: kind, Key: "credit:" + req.IdempotencyKey, Note: req.Reason})
	switch {
	case errors.Is(err, storage.ErrConflict):
		llmerr.Write(w, llmerr.New(http.StatusConflict, "idempotency_conflict", "this idempotency_key was already used for a different credit").WithParam("idempotency_key"))
		return
	case errors.Is(err, storage.ErrInsufficientCredits):
		llmerr.Write(w, llmerr.New(http.StatusBadRequest, "insufficient_quota", "the adjustment would take the balance below what is held"))
		return
	case err != nil:
		h.storeErr(w, err)
		return
	}
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
	}
	b, _ := h.app.Store().GetBalance(r.Context(), req.User)
	writeJSON(w, status, map[string]any{"object": "credit", "user": req.User, "entry_id": e.ID, "amount_micros": e.AmountMicros,
		"created": created, "balance_micros": b.BalanceMicros, "balance": catalog.FormatMicros(b.BalanceMicros)})
}

// usageQuery reads since, until (RFC 3339 or Unix seconds), model, limit, before.
func usageQuery(w http.ResponseWriter, r *http.Request, user string) (storage.UsageQuery, bool) {
	q := r.URL.Query()
	uq := storage.UsageQuery{User: user, Model: q.Get("model"), Before: q.Get("before"), Limit: 100}
	parseTime := func(name string) (time.Time, bool) {
		v := q.Get(name)
		if v == "" {
			return time.Time{}, true
		}
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			return t, true
		}
		if s, err := strconv.ParseInt(v, 10, 64); err == nil && s >= 0 {
			return time.Unix(s, 0), true
		}
		llmerr.Write(w, llmerr.New(http.StatusBadRequest, "invalid_request_error", name+" must be RFC 3339 or Unix seconds").WithParam(name))
		return time.Time{}, false
	}
	var ok bool
	if uq.Since, ok = parseTime("since"); !ok {
		return uq, false
	}
	if uq.Until, ok = parseTime("until"); !ok {
		return uq, false
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			llmerr.Write(w, llmerr.New(http.StatusBadRequest, "invalid_request_error", "limit must be 1 to 1000").WithParam("limit"))
			return uq, false
		}
		uq.Limit = n
	}
	return uq, true
}

type usageView struct {
	RequestID  string    `json:"id"`
	Object     string    `json:"object"`
	User       string    `json:"user"`
	Model      string    `json:"model"`
	Provider   string    `json:"provider"`
	TokensIn   int64     `json:"tokens_in"`
	TokensOut  int64     `json:"tokens_out"`
	CostMicros int64     `json:"cost_micros"`
	LatencyMS  int64     `json:"latency_ms"`
	BYOK       bool      `json:"byok"`
	Estimated  bool      `json:"estimated"`
	CreatedAt  time.Time `json:"created_at"`
}

func (h *Handler) usage(w http.ResponseWriter, r *http.Request, _ string) {
	user, admin, ok := subject(w, r)
	if !ok {
		return
	}
	if admin && r.URL.Query().Get("user") == "" && r.URL.Query().Has("all") {
		user = ""
	}
	uq, ok := usageQuery(w, r, user)
	if !ok {
		return
	}
	uq.Limit++ // one more tells whether there is a next page
	rs, err := h.app.Store().ListUsage(r.Context(), uq)
	if err != nil {
		h.storeErr(w, err)
		return
	}
	more := len(rs) >= uq.Limit
	if more {
		rs = rs[:uq.Limit-1]
	}
	data := make([]usageView, len(rs))
	for i, u := range rs {
		data[i] = usageView{u.RequestID, "usage", u.User, u.Model, u.Provider, u.TokensIn, u.TokensOut, u.CostMicros, u.LatencyMS, u.BYOK, u.Estimated, u.CreatedAt}
	}
	out := map[string]any{"object": "list", "data": data, "has_more": more}
	if more && len(rs) > 0 {
		out["next_before"] = rs[len(rs)-1].RequestID
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) usageSummary(w http.ResponseWriter, r *http.Request, _ string) {
	user, _, ok := subject(w, r)
	if !ok {
		return
	}
	uq, ok := usageQuery(w, r, user)
	if !ok {
		return
	}
	rows, err := h.app.Store().SummarizeUsage(r.Context(), uq)
	if err != nil {
		h.storeErr(w, err)
		return
	}
	type row struct {
		Day        string `json:"day"`
		Model      string `json:"model"`
		Requests   int64  `json:"requests"`
		TokensIn   int64  `json:"tokens_in"`
		TokensOut  int64  `json:"tokens_out"`
		CostMicros int64  `json:"cost_micros"`
	}
	data := make([]row, len(rows))
	var total int64
	for i, s := range rows {
		data[i] = row{s.Day.Format("2006-01-02"), s.Model, s.Requests, s.TokensIn, s.TokensOut, s.CostMicros}
		total += s.CostMicros
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "user": user, "data": data, "total_cost_micros": total})
}
