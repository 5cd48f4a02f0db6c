// Package server is the engine of a redisrpc Mux: it takes requests from a
// queue's lists, runs them on a bounded set of workers, pushes the responses,
// keeps the server's leases, and stops as net/http's Server does.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/internal/lists"
	"github.com/redisrpc/redisrpc/internal/outage"
	"github.com/redisrpc/redisrpc/internal/registry"
	"github.com/redisrpc/redisrpc/internal/wire"
)

// Invoke answers one decoded request. It runs on a worker; a panic in it is
// answered as an internal error.
type Invoke func(ctx context.Context, req *wire.Request) wire.Response

// Config configures a Server.
type Config struct {
	Queue       string
	ID          string // the server's id, unique among the queue's servers
	Shards      int
	Concurrency int
	MaxMessage  int
	ResponseTTL time.Duration
	Lease       time.Duration // how long the server may go silent before others rescue its requests
	Reliable    bool          // at least once
	// MaxDeliveries is how often, at least once, a request may be delivered
	// before it goes to the dead letters instead; 0 for no limit.
	MaxDeliveries int
	// Dedupe, at least once, is how long the server keeps each answer, so
	// that a request answered already is answered from it and not run
	// again: given back, or sent again by its client. 0 keeps none.
	Dedupe time.Duration
	Logger *slog.Logger
	// Info, if set, gives what the server publishes in the registry at each
	// beat; the server fills in what it knows itself.
	Info func() registry.Info
}

var (
	// ErrClosed is returned by Serve after Shutdown.
	ErrClosed = errors.New("server closed")
	// errStopped is the cause of the contexts of handlers cut off by a stop.
	errStopped = errors.New("the server stopped before the handler returned")
)

// Timing of a stop and of pops.
const (
	// PollInterval bounds every blocking pop, so that loops notice Close and
	// Shutdown without cancelling a pop, which could lose what it popped.
	PollInterval = time.Second
	// cutOffGrace is how long handlers whose contexts a stop cancelled have to
	// return before they are abandoned.
	cutOffGrace = time.Second
	// giveBackTimeout bounds the Redis commands of a stop, together: they
	// share one deadline from the stop, but leaving gets leaveAtLeast.
	giveBackTimeout = 5 * time.Second
	leaveAtLeast    = time.Second
	// stopPopGrace bounds a pop that is not cancelled (at most once, since
	// what Redis popped would be lost): its own timeout, PollInterval, and two
	// seconds more for its reply. rueidis reads the replies of the pops of
	// requests in the loop's goroutine, so this deadline (a tenth more at
	// most) is what ends them; that of the inbox at least once is cancelled
	// this long after a stop (late). Only a silent Redis keeps a pop that long.
	stopPopGrace = PollInterval + 2*time.Second
)

// Server serves one queue. It is safe for concurrent use.
type Server struct {
	rc     rueidis.Client
	cfg    Config
	invoke Invoke
	source *lists.Source
	pusher *lists.Pusher
	log    *slog.Logger

	mu     sync.Mutex
	closed bool // Shutdown was called
	cur    *run // the Serve running, or nil

	pops, taken, done atomic.Int64  // pops that brought requests, requests they brought, requests settled
	ready             chan struct{} // closed once Serve has beaten the first time
	readyOnce         sync.Once
	started           time.Time
	marks             struct{ registered, popped, looped atomicTime } // for Health

	// Failures of Redis, each logged once an outage (package outage).
	taking, beating, pushing, acking *outage.Log
}

// Counts returns the pops that brought requests, the requests they brought,
// and how many of those are not yet answered, since s was made.
func (s *Server) Counts() (pops, taken, inFlight int64) {
	done := s.done.Load() // before taken, which only grows: never negative
	taken = s.taken.Load()
	return s.pops.Load(), taken, taken - done
}

// New returns a Server for cfg that answers requests with invoke.
func New(rc rueidis.Client, cfg Config, invoke Invoke) *Server {
	s := &Server{rc: rc, cfg: cfg, invoke: invoke, log: cfg.Logger, ready: make(chan struct{})}
	s.source = lists.NewSource(rc, cfg.Queue, cfg.Shards, cfg.ID, cfg.Lease, cfg.Reliable,
		lists.Redelivery{Max: cfg.MaxDeliveries, Cap: DeadLetters, Dedupe: cfg.Reliable && cfg.Dedupe > 0})
	s.taking = outage.New(cfg.Logger, "redisrpc: taking requests", "queue", cfg.Queue)
	s.beating = outage.New(cfg.Logger, "redisrpc: heartbeat", "queue", cfg.Queue)
	s.pushing = outage.New(cfg.Logger, "redisrpc: sending responses", "queue", cfg.Queue)
	s.acking = outage.New(cfg.Logger, "redisrpc: removing answered requests from the processing list", "queue", cfg.Queue)
	ttl := int64((cfg.ResponseTTL + time.Second - 1) / time.Second)
	s.pusher = lists.NewPusher(rc, lists.PusherConfig{
		TTL:    ttl,
		Inline: true,
		OnError: func(failed []lists.Item, err error) {
			if len(failed) == 0 {
				s.acking.Fail(err)
				return
			}
			s.pushing.Fail(err)
		},
		OnSent:    s.pushing.OK,
		OnSettled: func(it lists.Item) { s.source.Settled(it.AckList, it.Ack) },
	})
	return s
}

// run is the state of one Serve.
type run struct {
	s   *Server
	ctx context.Context // Serve's

	stopOnce  sync.Once
	stopping  chan struct{}  // closed when the server stops taking requests
	waking    sync.WaitGroup // the stop's wake of the pops
	abortOnce sync.Once
	aborted   chan struct{} // closed when handlers are cut off

	handlers   context.Context // parent of the handlers' contexts
	cutOff     context.CancelCauseFunc
	pops       context.Context // parent of pops: cancelled on stop at least once
	cancelPops context.CancelFunc
	late       context.Context // parent of the other pops: cancelled stopPopGrace after a stop
	cancelLate context.CancelFunc
	stopAt     time.Time // when the stop began; set before stopping closes

	work  chan lists.Msg // to an idle worker; closed when the loops have returned
	ended chan struct{}  // a loop's word that it returned
	done  chan struct{}  // closed when Serve returns

	mu      sync.Mutex
	workers map[*worker]bool // live workers
	loners  map[*loner]bool  // the loops' that run lone requests (lone.go)
	idle    chan struct{}    // closed when no worker is left after work closed
	closing bool             // work is closed

	slotMu   sync.Mutex
	free     int           // handler slots not held by a request
	reserved int           // requests the pops under way may bring
	popping  map[int]int   // pops under way, by list (Loop.List)
	freed    chan struct{} // closed when a slot frees, if anybody waits
}

// Serve serves until ctx ends or Shutdown is called; see Mux.Serve.
func (s *Server) Serve(ctx context.Context) error {
	r := &run{
		s: s, ctx: ctx,
		stopping: make(chan struct{}), aborted: make(chan struct{}),
		work: make(chan lists.Msg), done: make(chan struct{}), workers: map[*worker]bool{}, loners: map[*loner]bool{}, idle: make(chan struct{}),
		free: s.cfg.Concurrency, popping: map[int]int{},
	}
	r.handlers, r.cutOff = context.WithCancelCause(context.WithoutCancel(ctx))
	r.pops, r.cancelPops = context.WithCancel(context.Background())
	r.late, r.cancelLate = context.WithCancel(context.Background())
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrClosed
	case s.cur != nil:
		s.mu.Unlock()
		return errors.New("Serve called while already serving")
	}
	s.cur = r
	s.started = time.Now()
	// The marks of an earlier Serve say nothing of this one.
	s.marks.registered.Store(0)
	s.marks.popped.Store(0)
	s.marks.looped.Store(0)
	s.mu.Unlock()
	defer func() {
		r.cutOff(errStopped)
		r.cancelPops()
		r.cancelLate()
		s.mu.Lock()
		s.cur = nil
		s.mu.Unlock()
		close(r.done)
	}()

	stopBeating := s.startBeating()
	// Ending ctx stops at once: taking requests, and the handlers.
	stopAfter := context.AfterFunc(ctx, func() {
		r.stop()
		r.abort()
	})
	defer stopAfter()

	loops := s.source.Loops()
	share := max(1, s.cfg.Concurrency/len(loops))
	r.ended = make(chan struct{}, len(loops))
	onList := map[int]int{}
	for _, loop := range loops {
		onList[loop.List()]++
	}
	for _, loop := range loops {
		go r.runLoop(loop, share, onList[loop.List()] > 1)
	}
	for range loops {
		<-r.ended
	}
	r.mu.Lock()
	r.closing = true
	close(r.work) // the loops, its only senders, have returned
	if len(r.workers) == 0 {
		close(r.idle)
	}
	r.mu.Unlock()
	r.drain()
	s.pusher.Wait()
	// Answers whose push failed are tried again while their callers wait,
	// but a stop waits for them only as long as for its other commands:
	// those it gives up on stay in the processing list, given back below.
	flush, cancelFlush := r.stopContext()
	if n := s.pusher.FlushRetries(flush); n > 0 {
		s.log.Error("redisrpc: stopped with answers Redis did not take; their requests go back to the queue and run again",
			"queue", s.cfg.Queue, "answers", n)
	}
	cancelFlush()
	r.waking.Wait()
	stopBeating(r.stopContext) // only now: Shutdown returns after this server has left
	if err := ctx.Err(); err != nil {
		return err
	}
	return ErrClosed
}

// drain waits for the workers to finish, or, once the stop turned hard, for
// cutOffGrace more, then abandons the handlers that still run.
func (r *run) drain() {
	select {
	case <-r.idle:
		return
	case <-r.aborted:
	}
	t := time.NewTimer(cutOffGrace)
	defer t.Stop()
	select {
	case <-r.idle:
		return
	case <-t.C:
	}
	r.mu.Lock()
	stuck := make([]*worker, 0, len(r.workers))
	for w := range r.workers {
		stuck = append(stuck, w)
	}
	r.mu.Unlock()
	for _, w := range stuck {
		r.abandon(w)
	}
}

// stop makes the server take no more requests and ends its waiting pops. It
// does not wait for Redis: the wake goes out from a goroutine that Serve
// waits for, so that a stop, and a hard stop after it, keep their own
// deadlines while Redis is silent.
func (r *run) stop() {
	r.stopOnce.Do(func() {
		r.waking.Add(1) // before the loops can end, and Serve wait for it
		r.stopAt = time.Now()
		close(r.stopping)
		r.mu.Lock()
		for l := range r.loners {
			l.stop() // the loop of a lone handler ends with it; Serve goes on meanwhile
		}
		r.mu.Unlock()
		r.cancelPops()
		time.AfterFunc(stopPopGrace, r.cancelLate)
		go func() {
			defer r.waking.Done()
			ctx, cancel := r.stopContext()
			defer cancel()
			if err := r.s.source.Wake(ctx); err != nil {
				r.s.log.Warn("redisrpc: waking the pops of a stopping server; they end within a second", "queue", r.s.cfg.Queue, "err", err)
			}
		}()
	})
}

// stopContext returns the context of a Redis command of the stop: all
// share one deadline, giveBackTimeout after the stop began, so that a silent
// Redis delays Serve's return once, not once for each; but each gets at
// least leaveAtLeast, for those that come after a long drain.
func (r *run) stopContext() (context.Context, context.CancelFunc) {
	by := time.Now().Add(giveBackTimeout)
	if r.stopped() {
		by = later(r.stopAt.Add(giveBackTimeout), time.Now().Add(leaveAtLeast))
	}
	return context.WithDeadline(context.Background(), by)
}

// abort cuts off the running handlers: their contexts end with errStopped.
func (r *run) abort() {
	r.abortOnce.Do(func() {
		r.cutOff(errStopped)
		close(r.aborted)
	})
}

func (r *run) stopped() bool {
	select {
	case <-r.stopping:
		return true
	default:
		return false
	}
}

// Ready returns a channel closed once Serve has registered the server, the
// first time: its lease is held and its entry published. It stays open while
// the beats that would register it fail.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Shutdown stops the server taking requests and waits for Serve to finish the
// running handlers, send their responses and leave; see Mux.Shutdown.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	r := s.cur
	s.mu.Unlock()
	if r == nil {
		return nil
	}
	r.stop()
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		r.abort()
		return ctx.Err()
	}
}

// startBeating keeps the server's leases until the returned function is
// called, which then gives back what is left in its processing lists and
// ends its leases, within the context leaving returns.
func (s *Server) startBeating() (stop func(leaving func() (context.Context, context.CancelFunc))) {
	registered := func() bool {
		ok := s.beat()
		if ok {
			s.marks.registered.Store(time.Now().UnixNano())
			s.readyOnce.Do(func() { close(s.ready) })
		}
		return ok
	}
	ok := registered()
	done, beating := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(beating)
		// A beat that fails is tried again soon, so that a short outage of
		// Redis at the time of a beat does not let the lease run out.
		every, backoff := s.cfg.Lease/3, time.Duration(0)
		next := func(ok bool) time.Duration {
			if ok {
				backoff = 0
				return every
			}
			backoff = min(max(2*backoff, 100*time.Millisecond), every)
			return backoff
		}
		t := time.NewTimer(next(ok))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				t.Reset(next(registered()))
			}
		}
	}()
	return func(leaving func() (context.Context, context.CancelFunc)) {
		close(done)
		<-beating
		ctx, cancel := leaving()
		defer cancel()
		err := errors.Join(registry.Withdraw(ctx, s.rc, s.cfg.Queue, s.cfg.ID), s.source.Leave(ctx))
		if err != nil {
			s.log.Error("redisrpc: leaving", "queue", s.cfg.Queue, "err", err)
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// DeadLetters is how many dead letters a list keeps, the newest.
const DeadLetters = 1000

// answerDead answers the callers of requests that became dead letters with
// CodeInternal, where they still wait and name a valid response queue.
func (s *Server) answerDead(msgs []lists.Msg) {
	for _, m := range msgs {
		req, err := wire.DecodeRequest(m.Body)
		if err != nil || !wire.ValidResponseQueue(s.cfg.Queue, req.ResponseQueue) ||
			req.Deadline != 0 && !time.Now().Before(time.UnixMilli(req.Deadline)) {
			continue
		}
		why := fmt.Sprintf("%s was delivered %d times and each server that took it stopped before answering; it is in the dead letters of %s",
			req.FunctionCall.Name, s.cfg.MaxDeliveries, s.cfg.Queue)
		resp := wire.Failure(req.ID, wire.CodeInternal, why)
		// Kept, where answers are, so that a requeue of the dead letter is
		// refused, not run.
		s.pusher.Push(lists.Item{Key: req.ResponseQueue, Value: string(wire.AppendResponse(nil, &resp)),
			Keep: s.source.Kept(m, req.ResponseQueue, req.ID), KeepTTL: s.keepFor(&req)})
	}
}

// publish writes the server's registry entry.
func (s *Server) publish(ctx context.Context) error {
	info := s.cfg.Info()
	info.ID, info.Queue, info.Host, info.PID, info.Started = s.cfg.ID, s.cfg.Queue, host, os.Getpid(), s.started.UnixMilli()
	info.Mode = "at-most-once"
	if s.cfg.Reliable {
		info.Mode = "at-least-once"
	}
	info.Concurrency, info.Shards, info.MaxMessage = s.cfg.Concurrency, s.cfg.Shards, s.cfg.MaxMessage
	info.HeartbeatMS = s.cfg.Lease.Milliseconds()
	if s.dedupe() {
		info.DedupeMS = s.cfg.Dedupe.Milliseconds()
	}
	info.Stats.Pops, info.Stats.Taken, info.Stats.InFlight = s.Counts()
	info.Updated = time.Now().UnixMilli()
	return registry.Publish(ctx, s.rc, &info, s.cfg.Lease)
}

var host, _ = os.Hostname()

// dedupe reports whether the server keeps answers.
func (s *Server) dedupe() bool { return s.cfg.Reliable && s.cfg.Dedupe > 0 }

// keepFor is how long the answer to req is kept: the window, or until the
// request's deadline where that is later (a server runs no request past its
// deadline, so none can come back to run after it), plus a second for the
// servers' clocks; at most a day.
func (s *Server) keepFor(req *wire.Request) time.Duration {
	d := s.cfg.Dedupe
	if req.Deadline != 0 {
		d = max(d, time.Until(time.UnixMilli(req.Deadline))+time.Second)
	}
	return min(d, 24*time.Hour)
}

// beat renews the server's leases and entry, and gives back what its beat
// finds; it reports whether the server is registered: its lease on the
// queue itself renewed and its entry published, which is what clients and
// tools read (a shard's lease may fail apart, and is logged).
func (s *Server) beat() (registered bool) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Lease/3)
	defer cancel()
	b, err := s.source.Beat(ctx)
	registered = b.Held
	if s.cfg.Info != nil {
		perr := s.publish(ctx)
		registered = registered && perr == nil
		err = errors.Join(err, perr)
	}
	// The shard count is recorded apart, for good: tools find the shards'
	// requests and dead letters while no server is live.
	err = errors.Join(err, registry.RecordShards(ctx, s.rc, s.cfg.Queue, s.cfg.Shards))
	if err != nil {
		s.beating.Fail(err)
	} else {
		s.beating.OK()
	}
	s.report(b)
	return registered
}

// report logs what a beat did, and answers the callers of new dead letters.
func (s *Server) report(b lists.Beat) {
	if b.Rescued > 0 {
		s.log.Warn("redisrpc: gave back the requests of a silent server", "queue", s.cfg.Queue, "requests", b.Rescued)
	}
	if len(b.Dead) > 0 {
		s.log.Error("redisrpc: requests delivered too often went to the dead letters", "queue", s.cfg.Queue,
			"requests", len(b.Dead), "max_deliveries", s.cfg.MaxDeliveries)
		s.answerDead(b.Dead)
	}
	if b.Stranded > 0 {
		s.log.Warn("redisrpc: gave back requests of this server that nothing held", "queue", s.cfg.Queue, "requests", b.Stranded)
	}
	if b.Lapsed {
		s.log.Warn("redisrpc: this server's lease ran out before it renewed it; other servers may run its requests again",
			"queue", s.cfg.Queue, "lease", s.cfg.Lease)
	}
}
