package process

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Names inside an instance directory Dir/<id>/.
const (
	stateFile = "instance.json"
	workDir   = "work"
	logFile   = "runner.log"
)

// stateVersion is the version of the state file's format.
const stateVersion = 1

// state is what instance.json records: enough to find the instance after a
// restart and to tell its shim from a process that reuses the pid.
type state struct {
	Version      int       `json:"version"`
	InstanceID   string    `json:"instance_id"`
	Name         string    `json:"name"`
	PoolID       string    `json:"pool_id"`
	ControllerID string    `json:"controller_id"`
	Pid          int       `json:"pid"`           // 0 while Create has not started the shim yet
	StartTicks   uint64    `json:"start_ticks"`   // field 22 of /proc/<pid>/stat
	Namespaced   bool      `json:"namespaced"`    // new mount and PID namespaces
	UID          int       `json:"uid,omitempty"` // host uid and gid of the runner; 0: corral's
	CreatedAt    time.Time `json:"created_at"`
}

// writeState writes dir/instance.json atomically: a reader sees the old
// file or the new one, never a part.
func writeState(dir string, st state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, stateFile+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, stateFile))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// readState reads dir/instance.json. A missing file is fs.ErrNotExist.
func readState(dir string) (state, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return state{}, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return state{}, fmt.Errorf("parse %s: %w", stateFile, err)
	}
	if st.Version != stateVersion || st.InstanceID == "" || st.ControllerID == "" {
		return state{}, fmt.Errorf("parse %s: version %d, incomplete", stateFile, st.Version)
	}
	return st, nil
}

// removeAll removes dir like os.RemoveAll, and also when the runner left
// directories without write permission in it.
func removeAll(dir string) error {
	err := os.RemoveAll(dir)
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
