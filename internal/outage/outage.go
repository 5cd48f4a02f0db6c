// Package outage logs a failure that repeats, as Redis going away makes
// every command fail, without flooding the log: once when it starts, at most
// every few seconds while it lasts, with counts, and once when it ends.
package outage

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Every is how often a failure that lasts is logged again.
const Every = 5 * time.Second

// Log is one kind of failure of one component. It is safe for concurrent
// use; the zero value is not usable: make one with New.
type Log struct {
	log   *slog.Logger
	msg   string
	attrs []any

	on atomic.Bool // failing, read without the lock by OK

	mu       sync.Mutex
	failing  bool
	since    time.Time
	failures int // since the failure started
	logged   time.Time
	quiet    int // failures not logged since logged
}

// New returns a Log that writes msg, with attrs, to l.
func New(l *slog.Logger, msg string, attrs ...any) *Log {
	return &Log{log: l, msg: msg, attrs: attrs}
}

// Fail records a failure: logged at level Error if it starts an outage or
// Every has passed since the last line, else only counted.
func (o *Log) Fail(err error) {
	o.mu.Lock()
	now := time.Now()
	if !o.failing {
		o.failing, o.since, o.failures, o.quiet, o.logged = true, now, 1, 0, now
		o.on.Store(true)
		o.mu.Unlock()
		o.log.Error(o.msg, append(o.attrs, "err", err)...)
		return
	}
	o.failures++
	if now.Sub(o.logged) < Every {
		o.quiet++
		o.mu.Unlock()
		return
	}
	failures, quiet, since := o.failures, o.quiet, o.since
	o.logged, o.quiet = now, 0
	o.mu.Unlock()
	o.log.Error(o.msg+" (still failing)", append(o.attrs, "err", err, "for", now.Sub(since).Round(time.Millisecond),
		"failures", failures, "not_logged", quiet)...)
}

// OK records a success: it ends an outage, which is logged with its length
// and count of failures. Without an outage it costs an atomic load.
func (o *Log) OK() {
	if !o.on.Load() {
		return
	}
	o.mu.Lock()
	if !o.failing {
		o.mu.Unlock()
		return
	}
	o.failing = false
	o.on.Store(false)
	failures, since := o.failures, o.since
	o.mu.Unlock()
	o.log.Info(o.msg+": recovered", append(o.attrs, "after", time.Since(since).Round(time.Millisecond), "failures", failures)...)
}

// Failing reports whether an outage is on.
func (o *Log) Failing() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.failing
}
