package reconciler

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// deliveryLister is a forge client that says whether it can list its
// webhook deliveries (a GitHub client: yes with an App, no with a token).
// A redeliverer without it is taken to be able to.
type deliveryLister interface {
	CanListDeliveries() bool
}

// redeliverers returns the targets whose forge can have failed deliveries
// sent again, with their clients, and logs once (the first time) which
// targets can and which cannot.
func (r *Reconciler) redeliverers() (ids []string, rds []redeliverer) {
	var cannot []string
	for _, t := range r.v().targets {
		f, err := r.cfg.Forges.Forge(t)
		if err != nil {
			continue // the forge sweep reports it
		}
		rd, ok := f.(redeliverer)
		if dl, isDL := f.(deliveryLister); ok && isDL && !dl.CanListDeliveries() {
			ok = false
		}
		if !ok {
			cannot = append(cannot, t.ID)
			continue
		}
		ids, rds = append(ids, t.ID), append(rds, rd)
	}
	r.capsOnce.Do(func() {
		r.log.Info("webhook redelivery: targets whose failed deliveries corral has sent again", "can", ids, "cannot", cannot)
	})
	return ids, rds
}

// Redeliver asks forges that can (GitHub Apps) to send again the webhook
// deliveries that failed in the last hour. Targets of one App share the
// record of what was sent again, so each failure is redelivered once.
// Clients that cannot list deliveries (token targets) are not asked.
func (r *Reconciler) Redeliver(ctx context.Context) error {
	var errs []error
	since := r.clock.Now().Add(-time.Hour)
	ids, rds := r.redeliverers()
	for i, rd := range rds {
		n, err := rd.RedeliverFailed(ctx, since)
		if err != nil {
			errs = append(errs, fmt.Errorf("redeliver failed webhooks of %s: %w", ids[i], err))
		} else if n > 0 {
			r.log.Info("asked the forge to redeliver failed webhooks", "target", ids[i], "deliveries", n)
		}
	}
	return errors.Join(errs...)
}
