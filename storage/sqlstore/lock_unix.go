//go:build unix

package sqlstore

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive, non-blocking lock on path (created if
// missing); the lock goes with the process, also when it crashes.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() { _ = f.Close() }, nil
}
