package sqlite

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/corral-ci/corral/internal/corral"
)

// request is one Update waiting for the writer.
type request struct {
	ctx   context.Context
	fn    func(corral.Tx) error
	state atomic.Int32 // reqQueued, then reqTaken (writer) or reqAbandoned (caller)
	done  chan result  // buffered: the writer never blocks on an answer
}

const (
	reqQueued int32 = iota
	reqTaken
	reqAbandoned
)

type result struct {
	err      error
	panicked bool
	panicVal any
}

// Update runs fn in the writer's next group transaction and returns once
// that transaction is committed (durable with synchronous=FULL). While fn is
// still waiting in the queue, canceling ctx returns ctx's error and fn never
// runs; once the writer took fn, Update waits for the commit.
//
// fn runs on the writer goroutine. Its statements run to completion even if
// ctx is canceled meanwhile (each Tx method checks ctx first): an interrupted
// statement would abort the whole group's transaction, not just fn's.
func (s *Store) Update(ctx context.Context, fn func(corral.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &request{ctx: ctx, fn: fn, done: make(chan result, 1)}
	select {
	case <-s.closing:
		return errClosed
	default:
	}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return errClosed
	}
	var res result
	select {
	case res = <-r.done:
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			return ctx.Err()
		}
		res = <-r.done // fn is running or ran: its fate is being decided
	case <-s.writerDone:
		if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			return errClosed
		}
		res = <-r.done
	}
	if res.panicked {
		panic(res.panicVal)
	}
	return res.err
}

// writer is the only goroutine that writes. It owns w.
func (s *Store) writer(w *conn) {
	defer close(s.writerDone)
	defer w.close()
	batch := make([]*request, 0, s.maxBatch)
	for {
		select {
		case r := <-s.reqs:
			batch = append(batch[:0], r)
		case <-s.closing:
			// Answer what is queued, then stop.
			for {
				select {
				case r := <-s.reqs:
					if r.state.CompareAndSwap(reqQueued, reqTaken) {
						r.done <- result{err: errClosed}
					}
				default:
					return
				}
			}
		}
	drain:
		for len(batch) < s.maxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		live := batch[:0]
		for _, r := range batch {
			if r.state.CompareAndSwap(reqQueued, reqTaken) {
				live = append(live, r)
			}
		}
		if len(live) > 0 {
			s.runBatch(w, live, true)
		}
		clear(batch)
	}
}

// runBatch runs reqs in one transaction and answers each. If the
// transaction breaks (a statement error that SQLite escalates to a
// rollback of the whole transaction, a failed commit), the request that
// broke it gets the error and, when retry is set, the others run again in
// a fresh transaction: fn may be called twice, as corral.Store allows.
func (s *Store) runBatch(w *conn, reqs []*request, retry bool) {
	s.batches.Add(1)
	bg := context.Background()
	exec := func(q string) error {
		_, err := w.c.ExecContext(bg, q)
		return err
	}
	// The statements run for every Update are prepared once.
	execStmt := func(q string) error {
		st, err := w.stmt(bg, q)
		if err == nil {
			_, err = st.ExecContext(bg)
		}
		return err
	}
	if err := exec("BEGIN IMMEDIATE"); err != nil {
		err = fmt.Errorf("update: begin: %w: %w", corral.ErrUnavailable, err)
		for _, r := range reqs {
			r.done <- result{err: err}
		}
		return
	}
	results := make([]result, len(reqs))
	broken, culprit := error(nil), -1
	for i, r := range reqs {
		if err := execStmt("SAVEPOINT fn"); err != nil {
			broken = err
			break
		}
		if err := r.ctx.Err(); err != nil {
			results[i] = result{err: err}
		} else {
			results[i] = call(r.fn, &tx{c: w, detach: true})
		}
		if results[i].err != nil || results[i].panicked {
			if err := execStmt("ROLLBACK TO fn"); err != nil {
				broken, culprit = err, i
				break
			}
		}
		if err := execStmt("RELEASE fn"); err != nil {
			broken, culprit = err, i
			break
		}
	}
	if broken == nil {
		if err := exec("COMMIT"); err != nil {
			broken = fmt.Errorf("commit: %w", err)
		}
	}
	if broken == nil {
		for i, r := range reqs {
			r.done <- results[i]
		}
		return
	}
	_ = exec("ROLLBACK") // may fail if SQLite already rolled back
	s.log.Warn("group transaction failed", "requests", len(reqs), "err", broken)
	var again []*request
	for i, r := range reqs {
		switch {
		case i == culprit:
			if results[i].err == nil && !results[i].panicked {
				results[i].err = fmt.Errorf("update: %w", broken)
			}
			r.done <- results[i]
		case retry && culprit >= 0:
			again = append(again, r)
		default:
			r.done <- result{err: fmt.Errorf("update: %w", broken)}
		}
	}
	if len(again) > 0 {
		s.runBatch(w, again, false)
	}
}

// call runs fn, turning a panic into a result that Update re-panics in the
// caller's goroutine.
func call(fn func(corral.Tx) error, t corral.Tx) (res result) {
	defer func() {
		if v := recover(); v != nil {
			res = result{panicked: true, panicVal: v}
		}
	}()
	return result{err: fn(t)}
}
