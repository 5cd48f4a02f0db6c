// Package deadline gives a context a deadline without arming a timer until
// somebody waits on it. A server gives every request its caller's deadline, but
// most handlers never call Done; with context.WithDeadline each request paid for
// a timer all the same, a tenth of a busy server's CPU.
package deadline

import (
	"context"
	"sync"
	"time"
)

// Context is a context with a deadline, whose timer starts with the first call
// of Done, or of Err or Value once the deadline has passed. Until then it asks
// the clock. It behaves as context.WithDeadline(parent, d) would, and Stop as
// its CancelFunc, with one difference: where the deadline has passed and the
// parent is done before anything looks, Err gives the parent's reason, not
// context.DeadlineExceeded. It is safe for concurrent use.
type Context struct {
	parent context.Context
	d      time.Time

	mu      sync.Mutex
	armed   context.Context // the context.WithDeadline, once needed
	cancel  context.CancelFunc
	stopped bool
}

// New returns a Context with parent's values and cancellation and the
// deadline d. Call Stop when the work it bounds is done.
func New(parent context.Context, d time.Time) *Context {
	return &Context{parent: parent, d: d}
}

// arm returns the context that does the work, making it the first time.
func (c *Context) arm() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.armLocked()
}

func (c *Context) armLocked() context.Context {
	if c.armed == nil {
		c.armed, c.cancel = context.WithDeadline(c.parent, c.d)
		if c.stopped {
			c.cancel()
		}
	}
	return c.armed
}

// settled returns the armed context, arming it first where the context is
// done without its parent's help: past the deadline, or stopped. It returns
// nil while neither is so and nothing armed it.
func (c *Context) settled() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.armed == nil && (c.stopped || !time.Now().Before(c.d)) {
		c.armLocked()
	}
	return c.armed
}

// Stop cancels the context, as a context.CancelFunc does. It is safe to call
// more than once.
func (c *Context) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	if c.cancel != nil {
		c.cancel()
	}
}

// Deadline returns d.
func (c *Context) Deadline() (time.Time, bool) { return c.d, true }

// Done returns a channel closed at the deadline, when the parent is done, or
// on Stop.
func (c *Context) Done() <-chan struct{} { return c.arm().Done() }

// Err returns nil while Done is open, and why it closed after.
func (c *Context) Err() error {
	if a := c.settled(); a != nil {
		return a.Err()
	}
	return c.parent.Err()
}

// Value returns the parent's value for key. Once armed, it asks the armed
// context instead, which answers as the parent does except for the context
// package's own key: that one lets context.Cause, and contexts made from this
// one, see its deadline.
func (c *Context) Value(key any) any {
	if a := c.settled(); a != nil {
		return a.Value(key)
	}
	return c.parent.Value(key)
}

// String names the context as context.WithDeadline does, for debugging.
func (c *Context) String() string {
	return "deadline.Context(" + c.d.String() + ")"
}
