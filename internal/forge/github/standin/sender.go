package standin

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/corral-ci/corral/internal/forge/github"
)

// holdMax bounds how long a reordered webhook waits for a later one.
const holdMax = 300 * time.Millisecond

// deliveryRec is one delivery attempt, as the deliveries API lists it.
type deliveryRec struct {
	id             int64
	guid           string
	hook           *hook
	deliveredAt    time.Time
	redelivery     bool
	duration       float64
	status         string
	statusCode     int
	event, action  string
	installationID int64
	repositoryID   int64
	reqHeaders     map[string]string
	payload        []byte
	respHeaders    map[string]string
	respBody       string
}

// sender sends deliveries one at a time, in order (GitHub documents no
// order; the stand-in reorders only by fault), with GitHub's timeout from
// the HTTP client. It never retries: GitHub does not redeliver on its own.
type sender struct {
	hc     *http.Client
	log    *slog.Logger
	done   <-chan struct{}
	record func(d *deliveryRec, code int, status string, took time.Duration, h map[string]string, body string)
	wake   chan struct{}

	mu     sync.Mutex
	q      []*deliveryRec
	held   *deliveryRec
	heldAt time.Time
	st     WebhookStats
}

func newSender(hc *http.Client, log *slog.Logger, done <-chan struct{}) *sender {
	return &sender{hc: hc, log: log, done: done, wake: make(chan struct{}, 1)}
}

func (q *sender) bump(f func(*WebhookStats)) {
	q.mu.Lock()
	f(&q.st)
	q.mu.Unlock()
}

func (q *sender) stats() WebhookStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	st := q.st
	st.Pending = len(q.q)
	if q.held != nil {
		st.Pending++
	}
	return st
}

// push queues d. With hold (and nothing held yet) d waits until the next
// delivery has been queued ahead of it, or holdMax.
func (q *sender) push(d *deliveryRec, hold bool) {
	q.mu.Lock()
	switch {
	case hold && q.held == nil:
		q.held, q.heldAt = d, time.Now()
		q.st.Reordered++
	default:
		q.q = append(q.q, d)
		if q.held != nil {
			q.q = append(q.q, q.held)
			q.held = nil
		}
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *sender) start(wg *sync.WaitGroup) {
	ctx, cancel := context.WithCancel(context.Background())
	wg.Add(2)
	go func() {
		defer wg.Done()
		<-q.done
		cancel()
	}()
	go func() {
		defer wg.Done()
		q.loop(ctx)
	}()
}

func (q *sender) loop(ctx context.Context) {
	timer := time.NewTimer(holdMax)
	defer timer.Stop()
	for {
		q.mu.Lock()
		var next *deliveryRec
		if len(q.q) > 0 {
			next, q.q = q.q[0], q.q[1:]
		} else if q.held != nil && time.Since(q.heldAt) >= holdMax {
			next, q.held = q.held, nil
		}
		q.mu.Unlock()
		if next != nil {
			q.send(ctx, next)
			continue
		}
		timer.Reset(holdMax)
		select {
		case <-q.wake:
		case <-timer.C:
		case <-q.done:
			return
		}
	}
}

func (q *sender) send(ctx context.Context, d *deliveryRec) {
	start := time.Now()
	code, status, h, body := q.post(ctx, d)
	if ctx.Err() != nil {
		return // closing: the attempt is not recorded
	}
	took := time.Since(start)
	// Count first: whoever sees the attempt listed sees it counted too.
	q.bump(func(w *WebhookStats) {
		if code >= 200 && code < 300 {
			w.Sent++
		} else {
			w.Failed++
		}
		if d.redelivery {
			w.Redelivered++
		}
	})
	q.record(d, code, status, took, h, body)
	if code < 200 || code > 299 {
		q.log.Info("webhook delivery failed; GitHub does not retry", "guid", d.guid, "hook", d.hook.id, "status", status)
	}
}

func (q *sender) post(ctx context.Context, d *deliveryRec) (int, string, map[string]string, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.hook.url, bytes.NewReader(d.payload))
	if err != nil {
		return 0, "Invalid URL", nil, ""
	}
	for k, v := range d.reqHeaders {
		req.Header.Set(k, v)
	}
	req.Header.Set(github.HeaderSignature, github.Sign(d.hook.secret, d.payload))
	m := hmac.New(sha1.New, []byte(d.hook.secret.Reveal()))
	m.Write(d.payload)
	req.Header.Set("X-Hub-Signature", "sha1="+hex.EncodeToString(m.Sum(nil)))
	resp, err := q.hc.Do(req)
	if err != nil {
		return 0, "failed to connect to host", nil, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	h := map[string]string{}
	for k := range resp.Header {
		h[k] = resp.Header.Get(k)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, "OK", h, string(b)
	}
	return resp.StatusCode, fmt.Sprintf("Invalid HTTP Response: %d", resp.StatusCode), h, string(b)
}
