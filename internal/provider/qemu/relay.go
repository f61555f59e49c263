package qemu

import (
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// RelayArg is the argument of `corral vm-relay ADDR`, the program QEMU
// runs for each connection a guest opens to a forward: it copies its
// stdin to ADDR and ADDR to its stdout.
const RelayArg = "vm-relay"

// RunRelay relays stdin and stdout to addr and returns the exit code.
func RunRelay(addr string) int {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vm-relay:", err)
		return 1
	}
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(os.Stdout, c)
		close(done)
	}()
	_, _ = io.Copy(c, os.Stdin)
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	<-done
	_ = c.Close()
	return 0
}
