package e2etest

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// RoundRobin is a tiny load balancer in front of several corral replicas:
// each request goes to the next backend in turn; a backend that refuses
// the connection or does not answer within a few seconds is skipped for
// the next one, as a load balancer's health check would. A 5xx answer is
// passed on as is (the forge's delivery failed, and corral redelivers it).
type RoundRobin struct {
	Backends []string // host:port of each replica
	next     atomic.Uint64
	client   *http.Client
	mu       sync.Mutex
	Sent     map[string]int // the requests each backend answered
	log      []Answer
}

// Answer is one request a backend answered: when it was sent, and the
// status code.
type Answer struct {
	Sent    time.Time
	Backend string
	Code    int
}

// NewRoundRobin serves a RoundRobin on listen until the test ends.
func NewRoundRobin(t testing.TB, listen string, backends ...string) *RoundRobin {
	t.Helper()
	rr := &RoundRobin{Backends: backends, Sent: map[string]int{},
		client: &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
			MaxIdleConnsPerHost: 8,
		}}}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rr, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return rr
}

func (rr *RoundRobin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	first := rr.next.Add(1)
	var last error
	for i := range rr.Backends {
		b := rr.Backends[(first+uint64(i))%uint64(len(rr.Backends))]
		req, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+b+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		req.Header = r.Header.Clone()
		sent := time.Now()
		resp, err := rr.client.Do(req)
		if err != nil {
			last = err
			continue
		}
		rr.mu.Lock()
		rr.Sent[b]++
		rr.log = append(rr.log, Answer{Sent: sent, Backend: b, Code: resp.StatusCode})
		rr.mu.Unlock()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		resp.Body.Close()
		return
	}
	http.Error(w, "no backend answered: "+errors.Join(last).Error(), http.StatusBadGateway)
}

// Answers returns the answers so far.
func (rr *RoundRobin) Answers() []Answer {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return append([]Answer(nil), rr.log...)
}

// Counts returns a copy of Sent.
func (rr *RoundRobin) Counts() map[string]int {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	out := make(map[string]int, len(rr.Sent))
	for k, v := range rr.Sent {
		out[k] = v
	}
	return out
}

// TCPProxy forwards TCP connections from Addr to a target (a database),
// and can cut them: Cut closes every connection and refuses new ones
// until Restore. It stands for a network partition between one replica
// and its database.
type TCPProxy struct {
	Addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	closed bool
}

// NewTCPProxy listens on a free 127.0.0.1 port until the test ends.
func NewTCPProxy(t testing.TB, target string) *TCPProxy {
	t.Helper()
	p := &TCPProxy{target: target, conns: map[net.Conn]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.Addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(func() {
		p.Cut()
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
	})
	return p
}

func (p *TCPProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
}

func (p *TCPProxy) forward(c net.Conn) {
	up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil { // cut meanwhile
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// Cut closes the listener and every open connection: the replica's
// connections break and new ones are refused.
func (p *TCPProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

// Restore listens on Addr again.
func (p *TCPProxy) Restore(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return
	}
	ln, err := net.Listen("tcp", p.Addr)
	if err != nil {
		t.Fatalf("restore proxy on %s: %v", p.Addr, err)
	}
	p.serve(ln)
}

// Leads reports whether the replica at listen says in /readyz that it
// leads.
func Leads(listen string) bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + listen + "/readyz")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return bytes.Contains(b, []byte("this replica leads"))
}
