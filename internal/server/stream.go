package server

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/internal/lists"
	"github.com/redisrpc/redisrpc/internal/wire"
)

// ErrCallerGone is what a stream's Send returns once its caller has
// cancelled it, and the cause of its handler's context then.
var ErrCallerGone = errors.New("the caller of the stream has gone")

// streamStart is what Open needs of the request being served, put in its
// context by serveOne for stream requests alone.
type streamStart struct {
	r      *run
	job    lists.Msg
	opened bool                   // Open took the request off its processing list
	st     atomic.Pointer[Stream] // what Open made, for a stop that abandons it
}

// streamOf returns the stream start made, if any.
func streamOf(start *streamStart) *Stream {
	if start == nil {
		return nil
	}
	return start.st.Load()
}

type streamKey struct{}

const (
	// pollIdle is how often a stream whose handler sends nothing reads its
	// credit, to learn of a cancel: within 100 ms, with a round trip.
	pollIdle = 40 * time.Millisecond
	// CallerTimeout is how long a stream goes on without a word from its
	// caller, whose client grants again every 2 s while the stream is
	// open (the client's registry reading): after it, the caller is gone.
	CallerTimeout = 10 * time.Second
	// maxBeat bounds the heartbeat a caller believes of a server.
	maxBeat = 10 * time.Minute
)

// Stream sends the items of one stream request, in order, within the window
// its caller grants. Send queues an item; the stream's own goroutine pushes
// what is queued, many items to an RPUSH, reading the caller's credit in
// the same round trip, and beats while nothing is sent. It is safe for
// concurrent use.
type Stream struct {
	s             *Server
	reply, id     string
	credit        string
	window        int64
	cancel        context.CancelCauseFunc
	until         time.Time // the request's deadline, or a minute on at each push
	hasDeadline   bool
	mu            sync.Mutex
	queued        [][]byte  // encoded items not yet pushed
	sent          int64     // items Send took: the seq of the next
	pushed        int64     // items Redis took
	heard         time.Time // the caller's last grant
	allowed       int64     // items the caller allows: the window and its credit
	err           error     // the stream cannot go on
	closing       bool
	wake, granted chan struct{} // to the pusher; closed when allowed grows or err is set
	done          chan struct{}
}

// Open starts the stream of req, served with ctx as serveOne made it: it
// takes the request off its processing list, where it is held (streams are
// at most once), tells the caller the handler runs and how often it beats,
// and returns the stream and the handler's context, which ends when the
// caller cancels. Close the stream when the handler returns.
func Open(ctx context.Context, req *wire.Request) (*Stream, context.Context, error) {
	start, ok := ctx.Value(streamKey{}).(*streamStart)
	if !ok {
		return nil, ctx, errors.New("not a stream request")
	}
	s := start.r.s
	st := &Stream{
		s: s, reply: req.ResponseQueue, id: req.ID, credit: wire.Credit(req.ResponseQueue, req.ID),
		window: int64(req.Stream), allowed: int64(req.Stream),
		wake: make(chan struct{}, 1), granted: make(chan struct{}), done: make(chan struct{}),
	}
	if req.Deadline != 0 {
		st.until, st.hasDeadline = time.UnixMilli(req.Deadline), true
	}
	hctx, cancel := context.WithCancelCause(ctx)
	st.cancel = cancel
	octx, ocancel := context.WithTimeout(context.Background(), giveBackTimeout)
	defer ocancel()
	if err := s.source.Drop(octx, start.job); err != nil { // the handler runs once, or not at all
		cancel(err)
		return nil, ctx, err
	}
	start.opened = true
	if err := st.push(octx, [][]byte{st.beat()}); err != nil {
		cancel(err)
		return nil, ctx, err
	}
	st.heard = time.Now()
	go st.run()
	start.st.Store(st) // its goroutine runs: Abort may wait for it
	return st, hctx, nil
}

// Sent returns how many items Send took.
func (st *Stream) Sent() int64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.sent
}

// Pushed returns how many items Redis took: all that Send took, once Close
// returned nil.
func (st *Stream) Pushed() int64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.pushed
}

// errEnded is what Send returns after Close: the handler has returned.
var errEnded = errors.New("send after the stream's handler returned")

// Send queues item, the JSON of one, waiting while the caller's window is
// full; it returns ErrCallerGone once the caller has cancelled, and ctx's
// error when ctx ends first.
func (st *Stream) Send(ctx context.Context, item []byte) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	st.mu.Lock()
	if st.closing && st.err == nil {
		st.mu.Unlock()
		return errEnded
	}
	for st.err == nil && st.sent >= st.allowed {
		granted := st.granted
		st.mu.Unlock()
		select {
		case st.wake <- struct{}{}: // the pusher reads the credit now
		default:
		}
		select {
		case <-granted:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		st.mu.Lock()
	}
	if st.err != nil || st.closing {
		err := st.err
		st.mu.Unlock()
		if err == nil {
			err = errEnded
		}
		return err
	}
	st.queued = append(st.queued, wire.AppendItem(nil, st.id, st.sent, item))
	st.sent++
	st.mu.Unlock()
	select {
	case st.wake <- struct{}{}:
	default:
	}
	return nil
}

// Close pushes what is queued and stops the stream's goroutine, within ctx.
// It returns the error that stopped the stream, if any.
func (st *Stream) Close(ctx context.Context) error {
	st.mu.Lock()
	st.closing = true
	st.mu.Unlock()
	select {
	case st.wake <- struct{}{}:
	default:
	}
	select {
	case <-st.done:
	case <-ctx.Done():
		st.fail(ctx.Err())
		<-st.done
	}
	st.cancel(nil)
	st.mu.Lock()
	defer st.mu.Unlock()
	if errors.Is(st.err, ErrCallerGone) {
		return nil // nobody waits for the end
	}
	return st.err
}

// Abort stops the stream with err, as a handler cut off does, and waits
// for its goroutine: nothing more is sent.
func (st *Stream) Abort(err error) {
	st.fail(err)
	<-st.done
}

// fail stops the stream with err, unless it stopped already.
func (st *Stream) fail(err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.err == nil {
		st.err = err
		close(st.granted)
		st.cancel(err)
	}
}

// run pushes queued items, reads the credit, and beats, until Close has
// been called and nothing is queued, or the stream fails.
func (st *Stream) run() {
	defer close(st.done)
	every := st.s.cfg.Lease / 3
	lastPush := time.Now()
	wait := pollIdle
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		st.mu.Lock()
		batch := st.queued
		st.queued = nil
		blocked := st.sent >= st.allowed
		closing, failed := st.closing, st.err != nil
		st.mu.Unlock()
		if failed || closing && len(batch) == 0 {
			return
		}
		if len(batch) == 0 && time.Since(lastPush) >= every {
			batch = [][]byte{st.beat()}
		}
		if err := st.pushAndRead(batch, blocked, pollIdle); err != nil {
			st.fail(err)
			return
		}
		if len(batch) > 0 {
			lastPush = time.Now()
		}
		st.mu.Lock()
		for _, b := range batch {
			if !wire.IsBeat(string(b), st.id) {
				st.pushed++
			}
		}
		gone := time.Since(st.heard) > CallerTimeout
		st.mu.Unlock()
		if gone {
			st.fail(ErrCallerGone)
			return
		}
		st.mu.Lock()
		more := len(st.queued) > 0 || st.closing || st.sent >= st.allowed && st.err == nil
		st.mu.Unlock()
		if more || blocked {
			continue // a full window waits in Redis, for a grant
		}
		timer.Reset(wait)
		select {
		case <-st.wake:
			if !timer.Stop() {
				<-timer.C
			}
		case <-timer.C:
		}
	}
}

// pushAndRead pushes batch, if any, and takes the caller's grants, in one
// round trip; with nothing to push while the window is full, it waits for
// a grant up to wait. It tries again after failures (the caller drops the
// items it has already) until the request's deadline, or a minute.
func (st *Stream) pushAndRead(batch [][]byte, blocked bool, wait time.Duration) error {
	deadline := st.until
	if !st.hasDeadline {
		deadline = time.Now().Add(time.Minute)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	rc := st.s.rc
	for backoff := 10 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		var grants []string
		var err error
		if len(batch) == 0 && blocked {
			// A blocking pop: the grant wakes the stream at once.
			kv, perr := rc.Do(ctx, rc.B().Blpop().Key(st.credit).Timeout(wait.Seconds()).Build()).AsStrSlice()
			switch {
			case rueidis.IsRedisNil(perr):
			case perr != nil:
				err = perr
			case len(kv) == 2:
				grants = kv[1:]
			}
		} else {
			cmds := make(rueidis.Commands, 0, 3)
			if len(batch) > 0 {
				elems := make([]string, len(batch))
				for i, b := range batch {
					elems[i] = rueidis.BinaryString(b)
				}
				cmds = append(cmds, rc.B().Rpush().Key(st.reply).Element(elems...).Build(),
					rc.B().Expire().Key(st.reply).Seconds(st.ttl()).Build())
			}
			cmds = append(cmds, rc.B().Lpop().Key(st.credit).Count(1000).Build())
			res := rc.DoMulti(ctx, cmds...)
			err = lists.Err(res[:len(res)-1])
			g, gerr := res[len(res)-1].AsStrSlice()
			if gerr != nil && !rueidis.IsRedisNil(gerr) {
				err = errors.Join(err, gerr)
			}
			grants = g
		}
		if err == nil {
			for _, g := range grants {
				st.take(g)
			}
			return nil
		}
		st.s.pushing.Fail(err)
		st.mu.Lock()
		failed := st.err != nil
		st.mu.Unlock()
		if failed {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
	}
}

// take reads a grant of the caller: how many items it has read, or Cancel.
func (st *Stream) take(grant string) {
	if grant == wire.Cancel {
		st.fail(ErrCallerGone)
		return
	}
	n, err := strconv.ParseInt(grant, 10, 64)
	if err != nil || n < 0 {
		return // not a grant
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.heard = time.Now()
	if st.window+n > st.allowed && st.err == nil {
		st.allowed = st.window + n
		close(st.granted)
		st.granted = make(chan struct{})
	}
}

// push pushes msgs alone, once.
func (st *Stream) push(ctx context.Context, msgs [][]byte) error {
	rc := st.s.rc
	elems := make([]string, len(msgs))
	for i, b := range msgs {
		elems[i] = rueidis.BinaryString(b)
	}
	return lists.Err(rc.DoMulti(ctx,
		rc.B().Rpush().Key(st.reply).Element(elems...).Build(),
		rc.B().Expire().Key(st.reply).Seconds(st.ttl()).Build()))
}

// ttl is the expiry of the response list: the server's response TTL.
func (st *Stream) ttl() int64 { return int64((st.s.cfg.ResponseTTL + time.Second - 1) / time.Second) }

// beat is a beat of the stream.
func (st *Stream) beat() []byte {
	return wire.AppendBeat(nil, st.id, min(st.s.cfg.Lease, maxBeat).Milliseconds())
}
