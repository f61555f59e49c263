package qemu

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// qmp runs one command on a QEMU Machine Protocol socket: it reads the
// greeting, negotiates capabilities and executes cmd, returning QEMU's
// error when it answers with one. The protocol is QEMU's documented one
// (docs/interop/qmp-spec): JSON objects, one per line.
func qmp(socket, cmd string, timeout time.Duration) error {
	c, err := net.DialTimeout("unix", socket, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	r := bufio.NewReader(c)
	var greeting struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := readMsg(r, &greeting); err != nil {
		return fmt.Errorf("qmp greeting: %w", err)
	}
	if greeting.QMP == nil {
		return fmt.Errorf("qmp: no greeting")
	}
	for _, ex := range []string{"qmp_capabilities", cmd} {
		if _, err := fmt.Fprintf(c, "{\"execute\":%q}\n", ex); err != nil {
			return err
		}
		if err := waitReturn(r); err != nil {
			return fmt.Errorf("qmp %s: %w", ex, err)
		}
	}
	return nil
}

// waitReturn reads messages until the answer to the last command (events
// may come first).
func waitReturn(r *bufio.Reader) error {
	for {
		var m struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
		}
		if err := readMsg(r, &m); err != nil {
			return err
		}
		switch {
		case m.Error != nil:
			return fmt.Errorf("%s: %s", m.Error.Class, m.Error.Desc)
		case m.Return != nil:
			return nil
		}
	}
}

func readMsg(r *bufio.Reader, v any) error {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return err
	}
	return json.Unmarshal(line, v)
}
