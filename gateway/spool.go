package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/llmgate/llmgate/storage"
)

// spool keeps settlements the store could not take (the database was
// unreachable when a request finished) in a local append-only file, and
// applies them when the store answers again. The ledger's unique keys make
// every application exactly once, however often it is retried.
type spool struct {
	mu   sync.Mutex
	path string
}

func newSpool(dir, key string) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, key)
	if len(name) > 80 {
		name = name[:80]
	}
	return &spool{path: filepath.Join(dir, "spool-"+name+".jsonl")}, nil
}

// add appends one settlement durably.
func (s *spool) add(st storage.Settlement) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(append(b, '\n')); err != nil {
		return err
	}
	return f.Sync()
}

// drain applies what is spooled; what still fails stays for the next round.
func (s *spool) drain(ctx context.Context, st storage.Store) (applied, left int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.Open(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	var keep [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := append([]byte(nil), sc.Bytes()...)
		var set storage.Settlement
		if json.Unmarshal(line, &set) != nil {
			continue // a torn last line from a crash mid-write: nothing to apply
		}
		if _, _, err := st.Settle(ctx, set); err != nil && !errors.Is(err, storage.ErrConflict) {
			keep = append(keep, line)
			continue
		}
		applied++
	}
	f.Close()
	if applied == 0 {
		return 0, len(keep), nil
	}
	tmp := s.path + ".tmp"
	var buf []byte
	for _, l := range keep {
		buf = append(append(buf, l...), '\n')
	}
	if err := os.WriteFile(tmp, buf, 0o600); err != nil {
		return applied, len(keep), err
	}
	return applied, len(keep), os.Rename(tmp, s.path)
}

// drainSpool applies spooled settlements once the store answers.
func (a *App) drainSpool(ctx context.Context) {
	if !a.storeState.ready.Load() {
		return
	}
	n, left, err := a.spool.drain(ctx, a.store)
	if n > 0 {
		a.logger.Info("applied spooled settlements", zap.Int("applied", n), zap.Int("left", left))
	}
	if err != nil && ctx.Err() == nil {
		a.logger.Warn("settlement spool", zap.String("error", err.Error()))
	}
}
