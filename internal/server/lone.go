package server

import (
	"context"
	"sync/atomic"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/internal/lists"
)

// A lone request, the only one the server has in flight, at most once, is
// run by the loop that popped it, in its own goroutine, so that its response
// goes out with the loop's next pop: one write to Redis, and no hand-off to
// a worker or to the Pusher. Only a loop with a sibling on its list does so
// (Source.Loops: two pops on a single list), which meanwhile waits in Redis
// for the next request: a slow lone handler does not stop the server taking
// requests, and the next one, no longer lone, goes to a worker.
//
// A stop does not wait for a lone handler as it waits for the loops: the
// loop counts as ended (r.stop), and the handler is drained, cut off and
// abandoned as a worker's is. A handler that exits with runtime.Goexit ends
// its loop's goroutine: the loop goes on in another.

// The states of a lone request.
const (
	loneRunning  = iota
	loneAnswered // its response is in item, to go out with the next pop
	loneFinished // it needs no push of the loop: it was dropped, or answered otherwise
	loneStopped  // a stop counted its loop as ended; the response goes to the Pusher
)

// lone is one lone request; the worker of its loop points to it while it
// runs.
type lone struct {
	state atomic.Int32
	item  lists.Item // with loneAnswered
}

// answer takes the push it, resp's, for the loop's next pop, and reports
// whether it did: not after a stop, nor for an item with more than a push
// to do.
func (l *lone) answer(it lists.Item) bool {
	if it.AckList != "" || it.Keep != "" || !l.state.CompareAndSwap(loneRunning, loneAnswered) {
		return false
	}
	l.item = it
	return true
}

// loner is what a loop needs to run lone requests: a worker of its own,
// among the run's workers, so that a stop waits for, or abandons, its
// handler as it does those of other workers.
type loner struct {
	r      *run
	w      *worker
	ctx    context.Context // the parent of its requests' contexts
	cancel context.CancelFunc
	cur    atomic.Pointer[lone] // the lone request running, if any
}

// newLoner returns the loner of a loop, or nil where requests are not run
// alone: where the loop has no sibling on its list; at least once, where a
// push goes with the removal of its request from the processing list; and
// on Redis Cluster, where a response list may be in any slot and would go
// on a connection of its own.
func (r *run) newLoner(sibling bool) *loner {
	if !sibling || r.s.cfg.Reliable || r.s.rc.Mode() == rueidis.ClientModeCluster {
		return nil
	}
	l := &loner{r: r, w: &worker{}}
	l.ctx, l.cancel = context.WithCancel(r.handlers)
	r.mu.Lock()
	r.workers[l.w] = true
	r.loners[l] = true
	r.mu.Unlock()
	return l
}

// end takes the loner's worker off the run's workers.
func (l *loner) end() {
	if l == nil {
		return
	}
	l.cancel()
	l.r.mu.Lock()
	delete(l.r.loners, l)
	l.r.mu.Unlock()
	l.r.workerDone(l.w)
}

// stop counts the loop as ended, for Serve, if a lone request runs. r.mu
// must be held.
func (l *loner) stop() {
	if one := l.cur.Load(); one != nil && one.state.CompareAndSwap(loneRunning, loneStopped) {
		l.r.ended <- struct{}{}
	}
}

// alone reports whether msgs, what a pop brought, is a lone request.
func (l *loner) alone(msgs []lists.Msg) bool {
	if l == nil || len(msgs) != 1 {
		return false
	}
	_, _, inFlight := l.r.s.Counts()
	return inFlight == 1
}

// serve runs msg, which holds a slot, and returns its response to push with
// the next pop, if any; stopped reports that a stop counted the loop as
// ended meanwhile, so that it returns at once and tells Serve nothing. If
// the handler exits with runtime.Goexit, serve pushes the response, calls
// goOn to go on with the loop in a new goroutine unless a stop came, and
// lets this goroutine end.
func (l *loner) serve(msg lists.Msg, goOn func()) (answer *lists.Item, stopped bool) {
	one := &lone{}
	l.w.lone = one
	l.cur.Store(one)
	if l.r.stopped() { // a stop that came before cur was set did not see it
		l.r.mu.Lock()
		l.stop()
		l.r.mu.Unlock()
	}
	returned := false
	defer func() {
		l.cur.Store(nil)
		l.w.lone = nil
		if returned {
			return
		}
		if one.state.Load() == loneAnswered {
			l.r.s.pusher.Push(one.item)
		}
		if one.end() != loneStopped {
			goOn() // the loop's deferred end runs next, as this goroutine unwinds
		}
	}()
	l.r.serveOne(l.ctx, l.w, msg)
	returned = true
	switch one.end() {
	case loneAnswered:
		return &one.item, false
	case loneStopped:
		return nil, true
	}
	return nil, false
}

// end marks the request finished unless it was answered or a stop counted
// its loop, which no stop can do after, and returns its final state.
func (l *lone) end() int32 {
	l.state.CompareAndSwap(loneRunning, loneFinished)
	return l.state.Load()
}
