package standin

import "time"

// pushLocked queues d for the sender, at once or, with maxDelay, after a
// random delay up to it drawn from the seeded source: GitHub delivers
// webhooks late and in no promised order, so a delayed one may overtake or
// be overtaken by others. Each copy of a duplicate draws its own delay.
func (s *Server) pushLocked(d *deliveryRec, hold bool, maxDelay time.Duration) {
	if maxDelay <= 0 {
		s.out.push(d, hold)
		return
	}
	wait := time.Duration(s.rng.Int64N(int64(maxDelay)))
	s.out.bump(func(w *WebhookStats) { w.Delayed++ })
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
			s.out.push(d, hold)
		case <-s.done:
		}
	}()
}
