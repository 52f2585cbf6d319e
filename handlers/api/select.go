package api

import (
	"net/http"

	"github.com/llmgate/llmgate/exchange"
	"github.com/llmgate/llmgate/gateway"
	"github.com/llmgate/llmgate/llmerr"
	"github.com/llmgate/llmgate/reqview"
)

// selectModel answers POST /models/select: the routing decision for a chat
// body, with reasons, without calling any provider.
func (h *Handler) selectModel(w http.ResponseWriter, r *http.Request, _ string) {
	body, e := gateway.ReadBody(w, r, h.app.MaxBody(), gateway.DefaultBodyTimeout)
	if e != nil {
		llmerr.Write(w, e)
		return
	}
	view, e := reqview.Parse(reqview.Chat, body)
	if e != nil {
		llmerr.Write(w, e)
		return
	}
	x := &exchange.Exchange{Body: body, View: view, Identity: exchange.From(r.Context()).Identity}
	if e := h.app.Route(r.Context(), x); e != nil {
		llmerr.Write(w, e)
		return
	}
	d, ok := x.Decision.(*gateway.Decision)
	if !ok {
		// An explicit model: the decision is its providers in order.
		d = &gateway.Decision{Model: x.Route[0].Model, Provider: x.Route[0].Provider, Needs: []string{}, Fallbacks: []string{},
			Excluded: []gateway.Excluded{}, Reason: "explicit model"}
		for _, c := range x.Route[1:] {
			d.Fallbacks = append(d.Fallbacks, c.Provider+"/"+c.Upstream)
		}
	}
	writeJSON(w, http.StatusOK, d)
}
