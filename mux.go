package redisrpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/internal/deadline"
	"github.com/redisrpc/redisrpc/internal/lists"
	"github.com/redisrpc/redisrpc/internal/wire"
)

// handlerFunc is the one untyped shape every typed handler becomes: it takes the
// function call as it came and returns the encoded result.
type handlerFunc func(ctx context.Context, fc *wire.FunctionCall) (json.RawMessage, error)

// Mux serves the functions registered on it from one request queue. Register
// handlers with Handle, then call Serve. It is safe for concurrent use; handlers
// may be added while it serves.
type Mux struct {
	rc     rueidis.Client
	queue  string
	opts   options
	source *lists.Source // the queue and its shards
	pusher *lists.Pusher // responses

	mu       sync.Mutex
	handlers atomic.Pointer[map[string]handlerFunc] // copied on write
	serving  bool
	closed   bool          // Shutdown was called
	stopping chan struct{} // closed by Shutdown

	// Handlers run under runCtx, which is cancelled when Serve's context ends
	// or Shutdown gives up. Workers run them; running counts the workers,
	// active the requests taken and not yet answered.
	runCtx    context.Context
	cancelRun context.CancelFunc
	running   sync.WaitGroup
	active    atomic.Int64
	work      chan lists.Msg // to an idle worker; closed when Serve stops

	slotMu sync.Mutex
	free   int           // handler slots not in use
	freed  chan struct{} // signalled when a slot frees
}

// NewMux returns a Mux serving the request queue queue. It uses rc and never
// closes it. It panics if rc is nil or queue is empty.
func NewMux(rc rueidis.Client, queue string, opts ...Option) *Mux {
	mustQueue(rc, queue)
	o := newOptions(opts)
	m := &Mux{
		rc:       rc,
		queue:    queue,
		opts:     o,
		stopping: make(chan struct{}),
		free:     o.concurrency,
		freed:    make(chan struct{}, 1),
	}
	ttl := int64((o.responseTTL + time.Second - 1) / time.Second)
	m.pusher = lists.NewPusher(rc, ttl, true, func(failed []lists.Item, err error) {
		if len(failed) == 0 {
			m.opts.logger.Error("redisrpc: removing answered requests from the processing list", "queue", m.queue, "err", err)
			return
		}
		m.opts.logger.Error("redisrpc: sending responses", "queue", m.queue, "response_queue", failed[0].Key, "responses", len(failed), "err", err)
	})
	heartbeat := time.Duration(0) // at most once
	if o.atLeastOnce {
		heartbeat = o.heartbeat
	}
	m.source = lists.NewSource(rc, queue, o.shards, randomName(16), heartbeat)
	m.handlers.Store(&map[string]handlerFunc{})
	return m
}

// Handle registers h as the handler of endpoint e on m. h runs concurrently with
// other handlers; its context carries the caller's deadline and metadata
// (MetaFromContext). Returning an *Error chooses the code the caller sees; other
// errors are sent with their message and no code, and a panic is sent as
// CodeInternal. Handle panics if h is nil, e is a zero Endpoint, or e's name is
// already registered.
func Handle[Req, Resp any](m *Mux, e Endpoint[Req, Resp], h func(context.Context, Req) (Resp, error)) {
	if h == nil {
		panic("redisrpc: Handle with a nil handler for " + e.name)
	}
	if e.name == "" {
		panic("redisrpc: Handle with a zero Endpoint; make endpoints with NewEndpoint")
	}
	m.register(e.name, func(ctx context.Context, fc *wire.FunctionCall) (json.RawMessage, error) {
		req, err := decodeArgs[Req](fc)
		if err != nil {
			return nil, NewError(CodeInvalidArgument, fmt.Sprintf("%s: %v", e.name, err))
		}
		resp, err := h(ctx, req)
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(resp)
		if err != nil {
			return nil, NewError(CodeInternal, fmt.Sprintf("%s: encoding the result: %v", e.name, err))
		}
		return b, nil
	})
}

func (m *Mux) register(name string, h handlerFunc) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.handlers.Load()
	if _, dup := old[name]; dup {
		panic("redisrpc: Handle called twice for " + name)
	}
	next := make(map[string]handlerFunc, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[name] = h
	m.handlers.Store(&next)
}

// Serve takes requests from the queue and runs their handlers until ctx ends
// or Shutdown is called. Up to WithConcurrency handlers run at once; Serve takes
// a request only when a handler slot is free, so requests wait in Redis, not in
// memory.
//
// When ctx ends, Serve stops taking requests, cancels the contexts of running
// handlers, waits for them to return and their responses to be sent, and
// returns ctx.Err(). After Shutdown it returns ErrServerClosed once the running
// handlers have returned. Redis failures are logged and retried with back-off;
// they do not end Serve. Serve returns an error at once if m is already serving.
func (m *Mux) Serve(ctx context.Context) error {
	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		return ErrServerClosed
	case m.serving:
		m.mu.Unlock()
		return errors.New("redisrpc: Serve called while already serving")
	}
	m.serving = true
	m.runCtx, m.cancelRun = context.WithCancel(context.WithoutCancel(ctx))
	m.work = make(chan lists.Msg)
	m.mu.Unlock()
	defer m.cancelRun()
	stopBeating := m.startHeartbeat()

	// Pops wait in Redis on every list, two on a single one, so that one is
	// there while the other goes back for more (see lists.Source.Loops).
	loops := m.source.Loops()
	share := max(1, m.opts.concurrency/len(loops))
	errs := make(chan error, len(loops))
	for _, list := range loops {
		go func() { errs <- m.loop(ctx, list, share) }()
	}
	var err error
	for range loops {
		err = <-errs
	}
	if ctx.Err() != nil {
		m.cancelRun()
	}
	close(m.work) // the loops, its only senders, have returned
	m.running.Wait()
	m.pusher.Wait()
	stopBeating() // only now: Shutdown returns after this server has left

	m.mu.Lock()
	m.serving = false
	m.mu.Unlock()
	return err
}

// poppers is the number of pops a Client keeps waiting on its response list.
const poppers = 2

// loop pops requests from one list while slots are free, taking at most share
// at once so that other lists get theirs, and hands them to workers.
func (m *Mux) loop(ctx context.Context, list, share int) error {
	backoff := time.Duration(0)
	for {
		n, err := m.acquire(ctx, share)
		if err != nil {
			return err
		}
		// Never cancel a pop: what Redis popped would be lost. pollInterval
		// brings it back; the extra time covers a slow or vanished server.
		popCtx := deadline.New(context.WithoutCancel(ctx), time.Now().Add(pollInterval+10*time.Second))
		msgs, err := m.source.Pop(popCtx, list, pollInterval, n)
		popCtx.Stop()
		m.release(n - len(msgs))
		if err != nil {
			backoff = min(max(2*backoff, 50*time.Millisecond), 2*time.Second)
			m.opts.logger.Error("redisrpc: taking requests", "queue", m.queue, "err", err, "retry_in", backoff)
			if err := m.sleep(ctx, backoff); err != nil {
				return err
			}
			continue
		}
		backoff = 0
		m.active.Add(int64(len(msgs)))
		for _, msg := range msgs {
			select {
			case m.work <- msg:
			default: // no worker idle; there are fewer workers than slots
				m.running.Add(1)
				go m.worker(m.work, msg)
			}
		}
		// Let the workers just handed requests start before this loop goes
		// back to Redis; on a single list another pop waits there already
		// (Source.Loops), and on shards the delay is a goroutine switch.
		runtime.Gosched()
	}
}

// acquire waits for at least one free handler slot and takes up to limit.
func (m *Mux) acquire(ctx context.Context, limit int) (int, error) {
	for {
		select { // stopping wins over a free slot
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-m.stopping:
			return 0, ErrServerClosed
		default:
		}
		m.slotMu.Lock()
		n := min(m.free, limit)
		m.free -= n
		m.slotMu.Unlock()
		if n > 0 {
			return n, nil
		}
		select {
		case <-m.freed:
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-m.stopping:
			return 0, ErrServerClosed
		}
	}
}

// release returns n handler slots.
func (m *Mux) release(n int) {
	if n == 0 {
		return
	}
	m.slotMu.Lock()
	m.free += n
	m.slotMu.Unlock()
	select {
	case m.freed <- struct{}{}:
	default:
	}
}

// worker serves msg, then requests from work until it closes. Workers live
// as long as Serve so that their grown stacks serve many requests.
func (m *Mux) worker(work <-chan lists.Msg, msg lists.Msg) {
	defer m.running.Done()
	// Each request's context is a child of this one, not of runCtx, so that
	// workers do not contend for runCtx's lock registering them.
	ctx, cancel := context.WithCancel(m.runCtx)
	defer cancel()
	m.serveOne(ctx, msg)
	for msg := range work {
		m.serveOne(ctx, msg)
	}
}

func (m *Mux) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-m.stopping:
		return ErrServerClosed
	}
}

// Shutdown stops m taking requests and waits for running handlers to return
// and their responses to be sent. If ctx ends first, Shutdown cancels the
// handlers' contexts and returns ctx.Err(). Serve then returns ErrServerClosed.
// Shutdown may be called before Serve, and more than once.
func (m *Mux) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	if !m.closed {
		m.closed = true
		close(m.stopping)
	}
	m.mu.Unlock()

	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		m.mu.Lock()
		done := !m.serving && m.active.Load() == 0
		m.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			m.mu.Lock()
			if m.cancelRun != nil {
				m.cancelRun()
			}
			m.mu.Unlock()
			return ctx.Err()
		}
	}
}

// startHeartbeat beats in at-least-once mode until the returned function is
// called, which then gives back what is left in the processing lists.
func (m *Mux) startHeartbeat() (stop func()) {
	if !m.source.Reliable() {
		return func() {}
	}
	m.beat()
	done, beating := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(beating)
		m.keepAlive(done)
	}()
	return func() {
		close(done)
		<-beating
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.source.Leave(ctx); err != nil {
			m.opts.logger.Error("redisrpc: leaving", "queue", m.queue, "err", err)
		}
	}
}

// keepAlive beats and rescues the requests of silent servers until stop closes.
func (m *Mux) keepAlive(stop <-chan struct{}) {
	t := time.NewTicker(m.opts.heartbeat / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			m.beat()
		}
	}
}

func (m *Mux) beat() {
	ctx, cancel := context.WithTimeout(context.Background(), m.opts.heartbeat/3)
	defer cancel()
	n, err := m.source.Beat(ctx)
	if err != nil {
		m.opts.logger.Error("redisrpc: heartbeat", "queue", m.queue, "err", err)
	}
	if n > 0 {
		m.opts.logger.Warn("redisrpc: put back requests of a silent server", "queue", m.queue, "requests", n)
	}
}

// serveOne handles one raw request.
func (m *Mux) serveOne(base context.Context, job lists.Msg) {
	msg := job.Body
	defer func() {
		m.active.Add(-1)
		m.release(1)
	}()
	defer func() { // handlers have their own recover; this guards the decoding
		if p := recover(); p != nil {
			m.opts.logger.Error("redisrpc: dropped a request that broke the decoder", "queue", m.queue, "panic", p, "stack", string(debug.Stack()), "message", clip(msg))
			m.drop(job)
		}
	}()
	if len(msg) > m.opts.maxMessage {
		m.tooLarge(job)
		return
	}
	req, err := wire.DecodeRequest(msg)
	if err != nil {
		if !wire.ValidResponseQueue(m.queue, req.ResponseQueue) { // not JSON: look in place
			req.ResponseQueue, req.ID = wire.PeekReply(msg)
		}
		m.reject(job, req.ResponseQueue, req.ID, err.Error())
		return
	}
	if !wire.ValidResponseQueue(m.queue, req.ResponseQueue) {
		m.opts.logger.Warn("redisrpc: dropped a request whose response queue is outside the namespace",
			"queue", m.queue, "response_queue", clip(req.ResponseQueue), "function", clip(req.FunctionCall.Name))
		m.drop(job)
		return
	}
	ctx := base
	if req.Deadline != 0 {
		dl := time.UnixMilli(req.Deadline)
		if !time.Now().Before(dl) {
			// The caller has stopped waiting: running it would be wasted work.
			m.opts.logger.Debug("redisrpc: dropped a request past its deadline", "queue", m.queue, "function", req.FunctionCall.Name)
			m.drop(job)
			return
		}
		// No timer unless the handler waits on ctx; see package deadline.
		dctx := deadline.New(ctx, dl)
		defer dctx.Stop()
		ctx = dctx
	}
	if len(req.Meta) > 0 {
		ctx = context.WithValue(ctx, incomingMetaKey{}, req.Meta)
	}
	m.respond(req.ResponseQueue, m.invoke(ctx, &req), job)
}

// tooLarge answers a request over the size limit from its envelope alone,
// read in place, or drops it.
func (m *Mux) tooLarge(job lists.Msg) {
	queue, id := wire.PeekReply(job.Body)
	m.reject(job, queue, id, fmt.Sprintf("request of %d bytes is over the limit of %d", len(job.Body), m.opts.maxMessage))
}

// reject answers a bad request with CodeInvalidArgument where it names a valid
// response queue, and logs and drops it where it does not.
func (m *Mux) reject(job lists.Msg, queue, id, why string) {
	if !wire.ValidResponseQueue(m.queue, queue) {
		m.opts.logger.Warn("redisrpc: dropped a bad request", "queue", m.queue, "why", why, "message", clip(job.Body))
		m.drop(job)
		return
	}
	m.opts.logger.Warn("redisrpc: answered a bad request", "queue", m.queue, "why", why, "message", clip(job.Body))
	m.respond(queue, wire.Failure(id, string(CodeInvalidArgument), why), job)
}

// drop forgets a request that gets no response.
func (m *Mux) drop(job lists.Msg) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.source.Drop(ctx, job); err != nil {
		m.opts.logger.Error("redisrpc: removing a dropped request from the processing list", "queue", m.queue, "err", err)
	}
}

// invoke runs the handler of req and turns its outcome into a response.
func (m *Mux) invoke(ctx context.Context, req *wire.Request) (resp wire.Response) {
	name := req.FunctionCall.Name
	if name == "" {
		return wire.Failure(req.ID, string(CodeInvalidArgument), "request without a function name")
	}
	h := (*m.handlers.Load())[name]
	if h == nil {
		return wire.Failure(req.ID, string(CodeNotFound), fmt.Sprintf("no function %q", name))
	}
	defer func() {
		if p := recover(); p != nil {
			m.opts.logger.Error("redisrpc: handler panicked", "queue", m.queue, "function", name, "panic", p, "stack", string(debug.Stack()))
			resp = wire.Failure(req.ID, string(CodeInternal), "internal error in "+name)
		}
	}()
	result, err := h(ctx, &req.FunctionCall)
	if err == nil {
		return wire.Success(req.ID, result)
	}
	var e *Error
	switch {
	case errors.As(err, &e):
		return wire.Failure(req.ID, string(e.Code), e.Message)
	case errors.Is(err, context.DeadlineExceeded):
		return wire.Failure(req.ID, string(CodeDeadlineExceeded), err.Error())
	}
	return wire.Failure(req.ID, "", err.Error())
}

// respond queues resp for its list; responses queued together go out in one
// RPUSH per list, with one EXPIRE, pipelined by rueidis with other traffic.
// In at-least-once mode the request leaves its processing list after.
func (m *Mux) respond(key string, resp wire.Response, job lists.Msg) {
	body := wire.AppendResponse(make([]byte, 0, 48+len(resp.ID)+len(resp.ReturnValue)+len(resp.Exception)), &resp)
	it := lists.Item{Key: key, Value: rueidis.BinaryString(body)}
	it.AckList, it.Ack = m.source.Ack(job)
	m.pusher.Push(it)
}

type incomingMetaKey struct{}

// MetaFromContext returns the metadata the caller sent with the request a
// handler serves, or nil. The map must not be modified.
func MetaFromContext(ctx context.Context) map[string]string {
	m, _ := ctx.Value(incomingMetaKey{}).(map[string]string)
	return m
}
