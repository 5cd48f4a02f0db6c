package deadline

import (
	"context"
	"sync/atomic"
	"time"
)

// Window hands out contexts for many short operations that need a bound but
// not an exact one, such as the batches of a pipeline: each ends between d and
// d+slack after it was handed out, and all handed out within slack of each
// other are one context.WithDeadline, whose timer is armed once. (rueidis
// waits on Done of every context with a deadline that it queues a command
// with, so a Context per batch would arm a timer per batch.) It is safe for
// concurrent use.
type Window struct {
	parent   context.Context
	d, slack time.Duration
	cur      atomic.Pointer[window]
}

type window struct {
	ctx    context.Context
	cancel context.CancelFunc // kept for vet; the deadline releases the context
	until  time.Time          // handed out until then
}

// NewWindow returns a Window of contexts made from parent.
func NewWindow(parent context.Context, d, slack time.Duration) *Window {
	return &Window{parent: parent, d: d, slack: slack}
}

// Context returns a context with parent's values and cancellation and a
// deadline between d and d+slack from now.
func (w *Window) Context() context.Context {
	now := time.Now()
	cur := w.cur.Load()
	if cur != nil && now.Before(cur.until) {
		return cur.ctx
	}
	ctx, cancel := context.WithDeadline(w.parent, now.Add(w.d+w.slack))
	next := &window{ctx: ctx, cancel: cancel, until: now.Add(w.slack)}
	if !w.cur.CompareAndSwap(cur, next) { // another call made one: use it
		cancel()
		if won := w.cur.Load(); now.Before(won.until) {
			return won.ctx
		}
		return w.Context()
	}
	return ctx
}
