package lists

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// Own is a connection of one goroutine's own, for its pops (and a Pusher's
// pushes): with one command at a time on it and no cancellation, rueidis
// writes and reads in the calling goroutine. A command on the shared
// pipeline, or a cancellable one on rueidis' pool of blocking connections,
// is written and read by goroutines of the connection's, which then wake the
// caller: a hand-off each way, and most of a lone call's CPU.
//
// Commands on it end at their context's deadline, not at its cancellation:
// Close ends the one in flight at once, closing the connection and losing
// what Redis sent on it, and fails later ones. A connection that failed is
// given back to rueidis' pool, which drops it, and the next command takes
// another; so is one whose node no longer serves the keys (stale). It is safe for concurrent use, but commands from several
// goroutines at once lose the point of it.
type Own struct {
	rc     rueidis.Client
	shared bool // a Cluster's: commands go to rc (see NewOwn)

	mu      sync.Mutex
	dc      rueidis.DedicatedClient
	release func()
	closed  bool
}

// ErrClosed is the error of a command on an Own after Close.
var ErrClosed = errors.New("redisrpc: connection closed")

// NewOwn returns an Own that takes its connection from rc when first used.
// On a Cluster it has none: a dedicated connection there is bound to the
// node that served the first command's slot, and rueidis retries a redirect
// on it instead of following the slot after a failover; so commands go to
// rc, as cancellable ones (see abortable) that end when their context does,
// and Close leaves it to the caller's context to end the one in flight.
func NewOwn(rc rueidis.Client) *Own {
	return &Own{rc: rc, shared: rc.Mode() == rueidis.ClientModeCluster}
}

// OwnUntil returns an Own that ctx closes when it ends, and the function to
// call once done with it, which gives its connection back to the pool.
func OwnUntil(ctx context.Context, rc rueidis.Client) (*Own, func()) {
	o := NewOwn(rc)
	stop := context.AfterFunc(ctx, o.Close)
	return o, func() {
		stop()
		o.Release()
	}
}

// B returns the command builder.
func (o *Own) B() rueidis.Builder { return o.rc.B() }

// Do runs cmd, bounded by ctx's deadline (see Own).
func (o *Own) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	if o.shared {
		return o.rc.Do(abortable(ctx), cmd)
	}
	dc, err := o.conn()
	if err != nil {
		return rueidis.NewErrorResult(err)
	}
	res := dc.Do(deadlineOnly{ctx}, cmd)
	if stale(res.Error()) {
		o.failed(dc)
	}
	return res
}

// DoMulti runs cmds in one round trip, bounded by ctx's deadline.
func (o *Own) DoMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	if o.shared {
		return o.rc.DoMulti(abortable(ctx), cmds...)
	}
	dc, err := o.conn()
	if err != nil {
		res := make([]rueidis.RedisResult, len(cmds))
		for i := range res {
			res[i] = rueidis.NewErrorResult(err)
		}
		return res
	}
	res := dc.DoMulti(deadlineOnly{ctx}, cmds...)
	for _, r := range res {
		if stale(r.Error()) {
			o.failed(dc)
			break
		}
	}
	return res
}

// Close ends the command in flight and fails later ones with ErrClosed.
func (o *Own) Close() {
	o.mu.Lock()
	dc := o.dc
	o.closed = true
	o.dc, o.release = nil, nil
	o.mu.Unlock()
	if dc != nil {
		dc.Close() // closes the connection: a read in flight fails
	}
}

// Release fails later commands with ErrClosed and gives the connection back
// to rueidis' pool, for its holder to call when no command is in flight.
func (o *Own) Release() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	if o.dc != nil {
		o.release()
		o.dc, o.release = nil, nil
	}
}

func (o *Own) conn() (rueidis.DedicatedClient, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, ErrClosed
	}
	if o.dc == nil {
		o.dc, o.release = o.rc.Dedicate()
	}
	return o.dc, nil
}

// failed gives back dc, whose connection failed (rueidis' pool drops it).
func (o *Own) failed(dc rueidis.DedicatedClient) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.dc == dc {
		o.release()
		o.dc, o.release = nil, nil
	}
}

// stale reports whether err says a connection should be given up: it
// failed, or its node no longer serves the command's keys (a Cluster's slot
// moved, or a failover made it a replica) or cannot serve them yet.
func stale(err error) bool {
	if err == nil || rueidis.IsRedisNil(err) {
		return false
	}
	re, ok := rueidis.IsRedisErr(err)
	if !ok {
		return true
	}
	if _, moved := re.IsRedirect(); moved {
		return true
	}
	msg := re.Error()
	return re.IsTryAgain() || re.IsClusterDown() || re.IsLoading() ||
		strings.HasPrefix(msg, "READONLY") || strings.HasPrefix(msg, "MASTERDOWN")
}

// deadlineOnly is ctx without its cancellation: rueidis runs a command in
// the calling goroutine only where its context cannot be cancelled, or has
// a deadline, which then becomes the connection's.
type deadlineOnly struct{ ctx context.Context }

func (d deadlineOnly) Deadline() (time.Time, bool) { return d.ctx.Deadline() }
func (deadlineOnly) Done() <-chan struct{}         { return nil }
func (deadlineOnly) Err() error                    { return nil }
func (d deadlineOnly) Value(key any) any           { return d.ctx.Value(key) }
