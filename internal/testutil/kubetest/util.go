package kubetest

import (
	"bufio"
	"encoding/base64"
	"io"
	"sync"
)

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// prefixed returns a writer that copies whole lines to w, each prefixed
// with the component's name; writes from several components interleave by
// line only.
func prefixed(w io.Writer, name string) io.Writer {
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			logMu.Lock()
			_, _ = io.WriteString(w, name+": "+sc.Text()+"\n")
			logMu.Unlock()
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	return pw
}

var logMu sync.Mutex
