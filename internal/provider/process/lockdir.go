package process

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/corral-ci/corral/internal/corral"
)

// LockDir takes an exclusive lock on dir (creating it) that other
// processes respect: out-of-process plugins that back their instances by
// a Provider hold it around Create, since the Provider picks a free runner
// uid from the instances on disk and several plugin processes may create
// at once. The returned func releases it.
func LockDir(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %w", corral.ErrUnavailable, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".create.lock"), os.O_CREATE|os.O_RDWR|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", corral.ErrUnavailable, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: lock: %w", corral.ErrUnavailable, err)
	}
	return func() { f.Close() }, nil
}
