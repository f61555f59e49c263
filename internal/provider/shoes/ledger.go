package shoes

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// record is what corral keeps of one machine it asked a shoes plugin for,
// one JSON file per instance in the state directory (written atomically).
// The protocol has no listing, so these records are the provider's List:
// a record is written before AddInstance (CloudID empty: the outcome is
// not known yet) and completed after it, and removed once DeleteInstance
// succeeded. No secret is kept here.
type record struct {
	InstanceID   string    `json:"instance_id"`
	ControllerID string    `json:"controller_id"`
	PoolID       string    `json:"pool_id"`
	RunnerName   string    `json:"runner_name"`
	Labels       []string  `json:"labels,omitempty"`
	CloudID      string    `json:"cloud_id,omitempty"`
	ShoesType    string    `json:"shoes_type,omitempty"`
	IPAddress    string    `json:"ip_address,omitempty"`
	ResourceType string    `json:"resource_type,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
}

// providerID is the id corral knows the machine by: the plugin's cloud id,
// or, while AddInstance's outcome is unknown, the runner name (many
// plugins name the machine after it).
func (r *record) providerID() string {
	if r.CloudID != "" {
		return r.CloudID
	}
	return r.RunnerName
}

func (r *record) instance() corral.ProviderInstance {
	return corral.ProviderInstance{ProviderID: r.providerID(), InstanceID: r.InstanceID, PoolID: r.PoolID,
		Running: r.CloudID != "", CreatedAt: r.CreatedAt}
}

// ledger is the directory of records.
type ledger struct {
	dir string
	mu  sync.Mutex
}

var recordName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func (l *ledger) path(id string) (string, error) {
	if !recordName.MatchString(id) {
		return "", fmt.Errorf("%w: instance id %q is not a plain name", corral.ErrBadInput, id)
	}
	return filepath.Join(l.dir, id+".json"), nil
}

// put writes r atomically.
func (l *ledger) put(r *record) error {
	p, err := l.path(r.InstanceID)
	if err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return fmt.Errorf("%w: shoes state directory: %w", corral.ErrUnavailable, err)
	}
	f, err := os.CreateTemp(l.dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("%w: shoes state: %w", corral.ErrUnavailable, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("%w: shoes state: %w", corral.ErrUnavailable, err)
	}
	return nil
}

// get reads the record of an instance; nil when there is none.
func (l *ledger) get(id string) (*record, error) {
	p, err := l.path(id)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: shoes state: %w", corral.ErrUnavailable, err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("shoes state file %s: %w", p, err)
	}
	return &r, nil
}

// drop removes the record of an instance.
func (l *ledger) drop(id string) error {
	p, err := l.path(id)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: shoes state: %w", corral.ErrUnavailable, err)
	}
	return nil
}

// all reads every record; a file that cannot be read is reported, not
// skipped silently.
func (l *ledger) all() ([]record, error) {
	entries, err := os.ReadDir(l.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: shoes state: %w", corral.ErrUnavailable, err)
	}
	var out []record
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			continue
		}
		r, err := l.get(strings.TrimSuffix(name, ".json"))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if r != nil {
			out = append(out, *r)
		}
	}
	return out, errors.Join(errs...)
}
