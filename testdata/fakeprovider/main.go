// Command fakeprovider runs llmgate's fake OpenAI-compatible provider:
//
//	go run ./testdata/fakeprovider -addr 127.0.0.1:9999 -ttft 200ms -tps 20
//
// Point a provider's base_url at http://127.0.0.1:9999/v1.
package main

import (
	"flag"
	"log"
	"net/http"
	"time"

	"github.com/llmgate/llmgate/fakeprovider"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9999", "listen address")
	latency := flag.Duration("latency", 0, "delay before response headers")
	ttft := flag.Duration("ttft", 0, "delay before the first streamed token")
	tps := flag.Int("tps", 0, "streamed tokens per second (0: as fast as possible)")
	tokens := flag.Int("tokens", 8, "completion tokens per answer")
	fault := flag.String("fault", "", "fault to inject: 500, 429, 401, hang, reset")
	faultAfter := flag.Int("fault-after", 2, "chunks sent before a reset fault")
	retryAfter := flag.Int("retry-after", 1, "Retry-After seconds with the 429 fault")
	key := flag.String("key", "", "accept only this bearer key (empty: any)")
	flag.Parse()
	s := fakeprovider.New(fakeprovider.Config{
		Latency: *latency, TTFT: *ttft, TokensPerSecond: *tps, CompletionTokens: *tokens,
		Fault: fakeprovider.Fault(*fault), FaultAfter: *faultAfter, RetryAfter: *retryAfter, Key: *key,
	})
	log.Printf("fakeprovider listening on http://%s/v1", *addr)
	srv := &http.Server{Addr: *addr, Handler: s, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
