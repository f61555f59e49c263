package garm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// state is what corral must remember about a garm provider that garm's
// protocol does not give back: the pools it created instances in
// (ListInstances lists one pool) and, by garm instance name, corral's
// instance id and creation time. It lives in a JSON file under corral's
// data directory, written before the provider is asked to create, so that
// a corral killed at any point finds its instances again.
type state struct {
	path string
}

type stateFile struct {
	// Controller is the controller id corral last listed with: garm's
	// providers want GARM_CONTROLLER_ID on every command, and corral's
	// Delete of an orphan carries none.
	Controller string                `json:"controller,omitempty"`
	Pools      []string              `json:"pools"`
	Instances  map[string]stateEntry `json:"instances"` // by garm name
}

type stateEntry struct {
	InstanceID string    `json:"instance_id"`
	Controller string    `json:"controller"`
	PoolID     string    `json:"pool_id"`
	CreatedAt  time.Time `json:"created_at"`
}

// stateLocks serialises the read-modify-write of each state file between
// the provider objects of one corral (a reopened provider shares it).
var stateLocks sync.Map // path -> *sync.Mutex

func (s *state) lock() func() {
	m, _ := stateLocks.LoadOrStore(s.path, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

func (s *state) read() (stateFile, error) {
	f := stateFile{Instances: map[string]stateEntry{}}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, fmt.Errorf("%w: garm provider state: %w", corral.ErrUnavailable, err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("garm provider state %s is corrupt: %w", s.path, err)
	}
	if f.Instances == nil {
		f.Instances = map[string]stateEntry{}
	}
	return f, nil
}

func (s *state) write(f stateFile) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("%w: garm provider state: %w", corral.ErrUnavailable, err)
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("%w: garm provider state: %w", corral.ErrUnavailable, err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("%w: garm provider state: %w", corral.ErrUnavailable, err)
	}
	return nil
}

// update applies fn to the state and writes it back.
func (s *state) update(fn func(*stateFile)) error {
	defer s.lock()()
	f, err := s.read()
	if err != nil {
		return err
	}
	fn(&f)
	return s.write(f)
}

// snapshot reads the state.
func (s *state) snapshot() (stateFile, error) {
	defer s.lock()()
	return s.read()
}

func (s *state) add(name string, e stateEntry) error {
	return s.update(func(f *stateFile) {
		if !slices.Contains(f.Pools, e.PoolID) {
			f.Pools = append(f.Pools, e.PoolID)
		}
		f.Instances[name] = e
		f.Controller = e.Controller
	})
}

func (s *state) remove(name string) error {
	return s.update(func(f *stateFile) { delete(f.Instances, name) })
}

// prune forgets the pools that listed nothing and hold no instance corral
// knows of.
func (s *state) prune(controller string, empty []string) error {
	return s.update(func(f *stateFile) {
		f.Controller = controller
		used := map[string]bool{}
		for _, e := range f.Instances {
			used[e.PoolID] = true
		}
		f.Pools = slices.DeleteFunc(f.Pools, func(p string) bool { return slices.Contains(empty, p) && !used[p] })
	})
}
