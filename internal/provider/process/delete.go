package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/corral-ci/corral/internal/corral"
)

// Delete kills the instance's whole process tree and removes its directory.
// It is idempotent: an instance that is gone is nil. A pid that now belongs
// to another process (another start time) is never signalled.
func (p *Provider) Delete(ctx context.Context, inst corral.ProviderInstance) error {
	id := inst.ProviderID
	if id == "" {
		id = inst.InstanceID
	}
	if err := checkID(id); err != nil {
		return &corral.CallError{Op: "process delete", Target: inst.PoolID, Err: err}
	}
	dir := filepath.Join(p.cfg.Dir, id)
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		_ = p.iso().cg.removeTries(id, 1) // a directory removed by hand
		return nil
	}
	p.mu.Lock()
	p.deleting[id] = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.deleting, id)
		p.mu.Unlock()
	}()

	var st *state
	if s, err := readState(dir); err == nil {
		st = &s
	} else if !errors.Is(err, fs.ErrNotExist) {
		p.log.Warn("unreadable state; killing by environment marker only", keyInstance, id, keyErr, err)
	}
	if err := p.killTree(ctx, id, st); err != nil {
		return &corral.CallError{Op: "process delete", Target: inst.PoolID, Err: err}
	}
	if err := p.iso().cg.remove(id); err != nil {
		return &corral.CallError{Op: "process delete", Target: inst.PoolID, Err: fmt.Errorf("%w: %w", corral.ErrUnavailable, err)}
	}
	if err := unmountInstance(dir); err != nil {
		return &corral.CallError{Op: "process delete", Target: inst.PoolID, Err: fmt.Errorf("%w: %w", corral.ErrUnavailable, err)}
	}
	if err := removeAll(dir); err != nil {
		return &corral.CallError{Op: "process delete", Target: inst.PoolID, Err: fmt.Errorf("%w: %w", corral.ErrUnavailable, err)}
	}
	p.log.Info("instance deleted", keyInstance, id)
	return nil
}

// killTree SIGKILLs every process of the instance and waits, bounded by
// killTimeout and ctx, until none is left. The processes are:
//   - the shim, if its pid and start time match the state (in a PID
//     namespace, its death takes the whole namespace with it);
//   - members of the shim's session (the shim calls setsid, and the pid
//     cannot be reused while the session has members), when the shim was
//     seen alive or they carry the instance's environment marker;
//   - any process whose environment holds CORRAL_INSTANCE_ID=<id>: this
//     also finds the processes of a Create that crashed before its state
//     file named the shim.
func (p *Provider) killTree(ctx context.Context, id string, st *state) error {
	marker := "CORRAL_INSTANCE_ID=" + id
	shimSeen := false
	deadline := time.Now().Add(killTimeout)
	wait := 2 * time.Millisecond
	for {
		victims, err := p.findTree(marker, st, &shimSeen)
		if err != nil {
			return fmt.Errorf("%w: scan processes: %w", corral.ErrUnavailable, err)
		}
		if len(victims) == 0 {
			return nil
		}
		for _, v := range victims {
			if st != nil && v.Pid == st.Pid && alive(v.Pid, v.Start) {
				// Without a PID namespace the shim leads its own group;
				// while it lives, that group is surely the instance's.
				_ = syscall.Kill(-v.Pid, syscall.SIGKILL)
			}
			if err := signalExact(v.Pid, v.Start, syscall.SIGKILL); err != nil {
				p.log.Warn("kill process", keyInstance, id, keyPid, v.Pid, keyErr, err)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %d processes of instance %s still alive after %v", corral.ErrUnavailable, len(victims), id, killTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// findTree scans /proc for the live processes of an instance; see killTree.
func (p *Provider) findTree(marker string, st *state, shimSeen *bool) ([]procStat, error) {
	pids, err := allPids()
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var out []procStat
	for _, pid := range pids {
		if pid <= 1 || pid == self {
			continue
		}
		s, err := readStat(pid)
		if err != nil || s.dead() {
			continue
		}
		switch {
		case st != nil && st.Pid > 0 && pid == st.Pid:
			if s.Start == st.StartTicks {
				*shimSeen = true
				out = append(out, s)
			}
		case st != nil && st.Pid > 0 && s.Sid == st.Pid && s.Start >= st.StartTicks && *shimSeen:
			out = append(out, s)
		case hasEnv(pid, marker):
			out = append(out, s)
		}
	}
	return out, nil
}

// List returns the instances of controllerID found under Dir. Running is
// true while the shim recorded in the state file lives. Directories with an
// unreadable state file are skipped (and logged); a directory that has no
// shim on record and is older than a minute is the leftover of a crashed
// Create and is listed as not running, so that the reconciler deletes it.
func (p *Provider) List(ctx context.Context, controllerID string) ([]corral.ProviderInstance, error) {
	entries, err := os.ReadDir(p.cfg.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, &corral.CallError{Op: "process list", Err: fmt.Errorf("%w: %w", corral.ErrUnavailable, err)}
	}
	now := p.clock.Now()
	var out []corral.ProviderInstance
	var pids []int // read once, only when a record lacks its pid
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !e.IsDir() || checkID(e.Name()) != nil {
			continue
		}
		dir := filepath.Join(p.cfg.Dir, e.Name())
		st, err := readState(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Crashed between mkdir and the first state record: no
			// controller id to go by, so every controller sees it.
			if fi, err := e.Info(); err == nil && now.Sub(fi.ModTime()) > orphanAge {
				out = append(out, corral.ProviderInstance{ProviderID: e.Name(), InstanceID: e.Name(), CreatedAt: fi.ModTime()})
			}
			continue
		case err != nil:
			p.log.Warn("skipping instance directory with unreadable state", keyDir, dir, keyErr, err)
			continue
		case st.ControllerID != controllerID:
			continue
		}
		running := alive(st.Pid, st.StartTicks)
		if st.Pid == 0 {
			// A Create that started the shim but was cut short (a crash)
			// before it recorded the pid: the runner may be at work.
			// Its processes carry the instance id in their environment.
			if pids == nil {
				pids, _ = allPids()
			}
			running = false
			for _, pid := range pids {
				if hasEnv(pid, "CORRAL_INSTANCE_ID="+st.InstanceID) {
					if ps, err := readStat(pid); err == nil && !ps.dead() {
						running = true
						break
					}
				}
			}
			if !running && now.Sub(st.CreatedAt) <= orphanAge {
				continue // a Create in progress
			}
		}
		out = append(out, corral.ProviderInstance{
			ProviderID: e.Name(),
			InstanceID: st.InstanceID,
			PoolID:     st.PoolID,
			Running:    running,
			CreatedAt:  st.CreatedAt,
		})
	}
	return out, nil
}

// RunnerLog returns the last maxBytes of the instance's runner.log (the
// shim's and the runner's output).
func (p *Provider) RunnerLog(_ context.Context, inst corral.ProviderInstance, maxBytes int) (string, error) {
	if err := checkID(inst.InstanceID); err != nil {
		return "", err
	}
	f, err := os.Open(filepath.Join(p.cfg.Dir, inst.InstanceID, logFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("runner log of %s: %w", inst.InstanceID, corral.ErrNotFound)
		}
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	off := st.Size() - int64(maxBytes)
	if off < 0 {
		off = 0
	}
	b := make([]byte, st.Size()-off)
	n, err := f.ReadAt(b, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return string(b[:n]), nil
}
