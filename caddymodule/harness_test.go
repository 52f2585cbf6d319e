package caddymodule_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	_ "github.com/llmgate/llmgate/caddymodule"
	"github.com/llmgate/llmgate/fakeprovider"
)

// Caddy is a process-wide singleton, so tests that load configs run one at a time.
var caddyMu sync.Mutex

type gw struct {
	base    string // http://127.0.0.1:port
	logFile string
}

// logs returns everything Caddy logged so far: process logs and access logs.
func (g *gw) logs() string {
	b, _ := os.ReadFile(g.logFile)
	return string(b)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startGateway adapts a Caddyfile whose site address is written as {PORT}
// and runs it until the test ends. Logs go to a sink the test can read.
func startGateway(t *testing.T, caddyfile string) *gw {
	t.Helper()
	caddyMu.Lock()
	t.Cleanup(caddyMu.Unlock)
	port := freePort(t)
	if !strings.HasPrefix(strings.TrimSpace(caddyfile), "{") {
		t.Fatal("test Caddyfile must start with a global options block")
	}
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	cf := strings.ReplaceAll(caddyfile, "{PORT}", fmt.Sprint(port))
	cf = strings.ReplaceAll(cf, "{LOG}", logFile)
	cf = strings.ReplaceAll(cf, "{DB}", filepath.Join(t.TempDir(), "llmgate.db"))
	cf = "{\n\tadmin off\n\tpersist_config off\n\tauto_https off\n\tskip_install_trust\n\tlog {\n\t\toutput file " + logFile + "\n\t\tlevel DEBUG\n\t}\n" + strings.TrimPrefix(strings.TrimSpace(cf), "{")
	adapter := caddyconfig.GetAdapter("caddyfile")
	cfgJSON, _, err := adapter.Adapt([]byte(cf), nil)
	if err != nil {
		t.Fatalf("adapt: %v\n%s", err, cf)
	}
	if err := caddy.Load(cfgJSON, true); err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	g := &gw{base: fmt.Sprintf("http://127.0.0.1:%d", port), logFile: logFile}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return g
}

// fake starts a fake provider on loopback.
func fake(t *testing.T, cfg fakeprovider.Config) (*fakeprovider.Server, string) {
	t.Helper()
	fp := fakeprovider.New(cfg)
	srv := httptest.NewServer(fp)
	t.Cleanup(srv.Close)
	return fp, srv.URL + "/v1"
}

func (g *gw) client(opts ...option.RequestOption) *openai.Client {
	base := []option.RequestOption{option.WithBaseURL(g.base + "/v1/"), option.WithAPIKey(testAdminKey), option.WithMaxRetries(0)}
	c := openai.NewClient(append(base, opts...)...)
	return &c
}

// testAdminKey is the bootstrap admin key of the test configs.
const testAdminKey = "sk-llm-test-admin-key-0123456789abcdef"

// post sends a request with the admin key unless hdr sets Authorization
// (to "" for none).
func (g *gw) post(t *testing.T, path, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, g.base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		}
	}
	return do(t, req)
}

func (g *gw) get(t *testing.T, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, g.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		}
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func chatParams(model string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
	}
}

// twoProviders is a config with a primary and a secondary provider serving
// one model, with a fast breaker.
func twoProviders(primary, secondary string, extra string) string {
	return fmt.Sprintf(`{
	llm {
		storage sqlite {DB}
		no_builtin_catalog
		provider primary {
			base_url %s
			api_key sk-platform-primary-0123456789
			priority 1
			first_byte_timeout 400ms
			stream_idle_timeout 2s
			breaker {
				failures 2
				cooldown 300ms 1s
			}
			%s
		}
		provider secondary {
			base_url %s
			api_key sk-platform-secondary-0123456789
			priority 2
			first_byte_timeout 2s
		}
		model test-model {
			alias tm
			serve primary upstream-primary
			serve secondary upstream-secondary
			price 1.00 2.00
			context 8192
			capabilities tools json streaming
		}
		model test-embed {
			serve primary
			price 0.02 0
			context 8191
			capabilities embedding
		}
	}
}
http://127.0.0.1:{PORT} {
	handle_path /v1/* {
		llm_auth {
			admin_key `+testAdminKey+`
		}
		llm_api
		llm_router {
			max_body 64KB
		}
		llm_upstream
	}
	handle {
		error 404
	}
	handle_errors {
		llm_error
	}
	log {
		output file {LOG}
	}
}`, primary, extra, secondary)
}

var httpClient = &http.Client{Timeout: 10 * time.Second}
