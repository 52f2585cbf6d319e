package gateway

import (
	"fmt"
	"net/http"

	"github.com/llmgate/llmgate/catalog"
	"github.com/llmgate/llmgate/exchange"
	"github.com/llmgate/llmgate/llmerr"
	"github.com/llmgate/llmgate/reqview"
)

// RouteExplicit resolves the model a request names (id or alias) to every
// active provider that serves it, in priority order, after checking that the
// model can do what the request needs.
func (a *App) RouteExplicit(v reqview.View) ([]exchange.Candidate, *llmerr.Error) {
	m, ok := a.catalog.Lookup(v.Model)
	if !ok || len(m.Serve) == 0 {
		return nil, llmerr.New(http.StatusNotFound, "model_not_found",
			fmt.Sprintf("the model `%s` does not exist or no configured provider serves it", v.Model)).WithParam("model")
	}
	if err := capabilityCheck(m, v); err != nil {
		return nil, err
	}
	out := make([]exchange.Candidate, len(m.Serve))
	for i, s := range m.Serve {
		out[i] = exchange.Candidate{Provider: s.Provider, Upstream: s.Upstream, Model: m.ID, Priority: s.Priority, Reason: "serves " + m.ID}
	}
	return out, nil
}

func capabilityCheck(m *catalog.Model, v reqview.View) *llmerr.Error {
	need := func(c, what string) *llmerr.Error {
		if len(m.Capabilities) == 0 || m.Has(c) {
			return nil
		}
		return llmerr.New(http.StatusBadRequest, "model_not_capable",
			fmt.Sprintf("the model `%s` does not support %s", m.ID, what)).WithParam("model")
	}
	embed := m.Has(catalog.CapEmbedding)
	switch {
	case v.Endpoint == reqview.Embeddings && len(m.Capabilities) > 0 && !embed:
		return llmerr.New(http.StatusBadRequest, "model_not_capable", fmt.Sprintf("the model `%s` is not an embedding model", m.ID)).WithParam("model")
	case v.Endpoint != reqview.Embeddings && embed:
		return llmerr.New(http.StatusBadRequest, "model_not_capable", fmt.Sprintf("the model `%s` is an embedding model; use /embeddings", m.ID)).WithParam("model")
	}
	if v.HasImages {
		if e := need(catalog.CapVision, "image input"); e != nil {
			return e
		}
	}
	if v.HasTools {
		if e := need(catalog.CapTools, "tools"); e != nil {
			return e
		}
	}
	if v.Stream {
		if e := need(catalog.CapStreaming, "streaming"); e != nil {
			return e
		}
	}
	return nil
}
