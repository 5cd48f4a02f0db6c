package redisrpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/internal/lists"
	"github.com/redisrpc/redisrpc/internal/registry"
	"github.com/redisrpc/redisrpc/internal/schema"
	"github.com/redisrpc/redisrpc/internal/server"
	"github.com/redisrpc/redisrpc/internal/stats"
	"github.com/redisrpc/redisrpc/internal/wire"
)

type muxConfig struct {
	shared
	concurrency   int
	responseTTL   time.Duration
	atLeastOnce   bool
	heartbeat     time.Duration
	maxDeliveries int
	redact        bool
	strict        bool          // WithStrictDecoding
	dedupe        time.Duration // 0: off; < 0: the default window
}

type muxOption func(*muxConfig)

func (o muxOption) applyToMux(c *muxConfig) { o(c) }

// WithConcurrency bounds how many handlers a Mux runs at once. The default is 64;
// values below 1 mean 1.
func WithConcurrency(n int) MuxOption {
	return muxOption(func(c *muxConfig) { c.concurrency = max(n, 1) })
}

// WithResponseTTL sets the expiry a Mux gives a response list each time it
// pushes a response, so that responses nobody collects do not stay in Redis. It
// is rounded up to whole seconds. The default is one minute.
func WithResponseTTL(d time.Duration) MuxOption {
	return muxOption(func(c *muxConfig) { c.responseTTL = max(d, time.Second) })
}

// WithAtLeastOnce makes a Mux deliver each request at least once: it moves the
// requests it takes into a processing list of its own, atomically, and removes
// each only after its response is pushed; when a server's lease runs out (see
// WithHeartbeat), live servers put its requests back at the head of the queue.
// A request may then run more than once, so handlers must be idempotent. The
// default is at most once.
func WithAtLeastOnce() MuxOption {
	return muxOption(func(c *muxConfig) { c.atLeastOnce = true })
}

// WithHeartbeat sets how long a Mux may go silent before it counts as gone:
// its lease on the queue lasts that long and is renewed every third of it.
// At least once, other servers then give its requests back to the queue. The
// default is 10 seconds; values below 300ms mean 300ms.
func WithHeartbeat(d time.Duration) MuxOption {
	return muxOption(func(c *muxConfig) { c.heartbeat = max(d, 300*time.Millisecond) })
}

// WithMaxDeliveries bounds how often, at least once, a request is delivered
// when each server that takes it stops before answering: a request that
// kills the servers that run it (a crash, an out-of-memory kill, os.Exit)
// would otherwise take down a whole fleet in turn. A request delivered n
// times is not run again: it goes to the dead-letter list {queue}:dead
// (the newest 1000 are kept), with why, when and how many deliveries, and
// its caller, if it still waits, gets CodeInternal. redisrpc dead lists,
// requeues and purges them. The default is 3; values below 1 mean no limit.
func WithMaxDeliveries(n int) MuxOption {
	return muxOption(func(c *muxConfig) { c.maxDeliveries = max(n, 0) })
}

// WithDedupe makes a Mux answer each request once, by its caller and id:
// it delivers at least once (WithAtLeastOnce), and keeps each answer for
// window, written in the same transaction as the answer and the removal of
// its request, so that a request that comes back after it was answered, as
// a Client's retry (WithRetries), the resend of a call whose response Redis
// lost, or a request given back after its removal was lost, is answered
// from what was kept and not run again; tools do not requeue a dead letter
// whose answer was kept (inspect.ErrKept). An answer is
// kept until the request's deadline where that is later, since no request
// runs past its deadline, and never longer than a day.
//
// The default window, for values of 0 or less, is twice the heartbeat and
// 10 s more (30 s by default): the longest a request answered can take to
// come back by itself, when its server dies after answering and before the
// removal (only possible on Redis Cluster, where the two cannot be one
// transaction on shards other than the queue), since live servers give back
// a dead server's requests within a heartbeat and a third of its lease
// running out, and a pop may still land in its processing list for 10 s.
//
// What it does not cover: a server that dies, or stops answering Redis for
// longer than its heartbeat, while a handler runs. Its request is given back
// and runs again, as the answer was never written; handlers whose effect
// must happen once still need their own guard for that case. Answers that
// ask to try again (CodeUnavailable) are not kept.
func WithDedupe(window time.Duration) MuxOption {
	return muxOption(func(c *muxConfig) {
		c.atLeastOnce = true
		c.dedupe = window
		if window <= 0 {
			c.dedupe = -1
		}
	})
}

// WithStrictDecoding makes a Mux answer requests that carry members its
// handler's request type has no field for, at any depth, with
// CodeInvalidArgument naming them all, rather than ignore them as
// encoding/json does: a caller that sends {"qty": 2} to a type that reads
// "quantity" learns of it at its first call. A member matches a field as the
// codec reads it, without regard to case; members of maps, of any and of
// types with their own UnmarshalJSON are never unknown. By default unknown
// members are ignored.
func WithStrictDecoding() MuxOption {
	return muxOption(func(c *muxConfig) { c.strict = true })
}

// WithRedactedErrors makes a Mux answer handler errors that are not an
// *Error with CodeInternal and the message "internal error", and log their
// text instead, so that internal details do not reach callers. By default
// their text is sent verbatim, with no code.
func WithRedactedErrors() MuxOption {
	return muxOption(func(c *muxConfig) { c.redact = true })
}

// handler is the untyped shape every typed handler becomes. direct decodes
// the arguments, runs the handler and encodes its result, with nothing boxed;
// with interceptors, decode gives them the request as an any and call runs
// the handler with it.
type handler struct {
	direct  func(ctx context.Context, fc *wire.FunctionCall) (json.RawMessage, error)
	decode  func(fc *wire.FunctionCall) (any, error)
	call    func(ctx context.Context, req any) (any, error)
	types   [2]string          // Go types of the request and response, for the registry
	schemas [2]json.RawMessage // and their JSON Schemas
	// stream runs a stream handler (HandleStream) with its decoded request;
	// nil for a function that answers once.
	stream func(ctx context.Context, req any, st *server.Stream) error
	stats  stats.Function
}

// Mux serves the functions registered on it from one request queue. Register
// handlers with Handle, then call Serve. It is safe for concurrent use; handlers
// may be added while it serves.
type Mux struct {
	queue     string
	cfg       muxConfig
	server    *server.Server
	intercept CallFunc // the interceptors around the handler, or nil without any

	mu       sync.Mutex
	handlers atomic.Pointer[map[string]*handler] // copied on write
	unknown  stats.Function                      // calls of functions not served
}

// NewMux returns a Mux serving the request queue queue. It uses rc and never
// closes it. It panics if rc is nil or queue is empty.
func NewMux(rc rueidis.Client, queue string, opts ...MuxOption) *Mux {
	mustQueue(rc, queue)
	cfg := muxConfig{shared: defaultShared(), concurrency: 64, responseTTL: time.Minute, heartbeat: 10 * time.Second, maxDeliveries: 3}
	for _, o := range opts {
		o.applyToMux(&cfg)
	}
	if cfg.dedupe < 0 {
		cfg.dedupe = 2*cfg.heartbeat + lists.LeaseGrace
	}
	m := &Mux{queue: queue, cfg: cfg}
	if len(cfg.interceptors) > 0 {
		m.intercept = chain(cfg.interceptors, nil)
	}
	m.server = server.New(rc, server.Config{
		Queue:         queue,
		ID:            wire.RandomName(16),
		Shards:        cfg.shards,
		Concurrency:   cfg.concurrency,
		MaxMessage:    cfg.maxMessage,
		ResponseTTL:   cfg.responseTTL,
		Lease:         cfg.heartbeat,
		Reliable:      cfg.atLeastOnce,
		MaxDeliveries: cfg.maxDeliveries,
		Dedupe:        cfg.dedupe,
		Logger:        cfg.logger,
		Info:          m.info,
	}, m.invoke)
	m.handlers.Store(&map[string]*handler{})
	return m
}

// Queue returns the request queue m serves.
func (m *Mux) Queue() string { return m.queue }

// Handle registers h as the handler of endpoint e on m. h runs concurrently
// with other handlers; its context carries the caller's deadline, and the
// call's CallInfo (CallInfoFromContext) with the caller's metadata
// (IncomingMeta). What the caller sees of h's errors is listed in the package
// documentation (Timeouts and failures). Handle panics if h is nil, e is a
// zero Endpoint, or e's name is already registered.
func Handle[Req, Resp any](m *Mux, e Endpoint[Req, Resp], h func(context.Context, Req) (Resp, error)) {
	if h == nil {
		panic("redisrpc: Handle with a nil handler for " + e.name)
	}
	if e.name == "" {
		panic("redisrpc: Handle with a zero Endpoint; make endpoints with NewEndpoint")
	}
	codec := m.cfg.codec
	reqType, respType := reflect.TypeFor[Req](), reflect.TypeFor[Resp]()
	decode := decoder[Req](m, e.name)
	m.register(e.name, &handler{
		types:   [2]string{reqType.String(), respType.String()},
		schemas: [2]json.RawMessage{schema.For(reqType), schema.For(respType)},
		direct: func(ctx context.Context, fc *wire.FunctionCall) (json.RawMessage, error) {
			req, err := decode(fc)
			if err != nil {
				return nil, err
			}
			resp, err := safely(m, e.name, h, ctx, req)
			if err != nil {
				return nil, err
			}
			return encodeResult(codec, e.name, resp)
		},
		decode: func(fc *wire.FunctionCall) (any, error) { return decode(fc) },
		call: func(ctx context.Context, v any) (any, error) {
			req, ok := v.(Req)
			if !ok && v != nil {
				return nil, NewError(CodeInternal, fmt.Sprintf("%s: an interceptor passed on a %T, want a %T", e.name, v, req))
			}
			return safely(m, e.name, h, ctx, req)
		},
	})
}

// decoder returns the decoding of the arguments of function into a Req,
// whose failures are CodeInvalidArgument; with WithStrictDecoding, so are
// arguments with members Req lacks.
func decoder[Req any](m *Mux, function string) func(fc *wire.FunctionCall) (Req, error) {
	codec, reqType := m.cfg.codec, reflect.TypeFor[Req]()
	var strict *schema.Schema // the request's schema, to find unknown members
	if m.cfg.strict {
		strict = schema.Of(reqType)
	}
	return func(fc *wire.FunctionCall) (Req, error) {
		req, data, err := decodeArgs[Req](codec, fc)
		if err != nil {
			return req, NewError(CodeInvalidArgument, fmt.Sprintf("%s: %v", function, err))
		}
		if strict != nil && data != nil {
			if unknown := schema.Unknown(strict, data); len(unknown) > 0 {
				return req, NewError(CodeInvalidArgument, fmt.Sprintf("%s: the request has %s, which %s lacks", function, members(unknown), reqType))
			}
		}
		return req, nil
	}
}

// HandleStream registers h as the handler of the stream endpoint s on m. h
// sends the items of one call with send, in order, and returns when there
// are no more: its error, if any, ends the stream as a handler's error ends
// a call (the package documentation lists what the caller sees). send
// blocks while the caller's window of unread items is full
// (WithStreamWindow), and returns ErrStreamCanceled once the caller has
// gone (it stopped reading, or its context ended), when h's context ends
// too: within 100 ms of the caller leaving. send is safe for concurrent
// use. Streams are at most once, in either delivery mode: a stream request
// leaves the queue when h starts. HandleStream panics as Handle does.
func HandleStream[Req, Item any](m *Mux, s Stream[Req, Item], h func(ctx context.Context, req Req, send func(Item) error) error) {
	name := s.e.name
	if h == nil {
		panic("redisrpc: HandleStream with a nil handler for " + name)
	}
	if name == "" {
		panic("redisrpc: HandleStream with a zero Stream; make streams with NewStream")
	}
	codec := m.cfg.codec
	reqType, itemType := reflect.TypeFor[Req](), reflect.TypeFor[Item]()
	decode := decoder[Req](m, name)
	m.register(name, &handler{
		types:   [2]string{reqType.String(), itemType.String()},
		schemas: [2]json.RawMessage{schema.For(reqType), schema.For(itemType)},
		decode:  func(fc *wire.FunctionCall) (any, error) { return decode(fc) },
		stream: func(ctx context.Context, v any, st *server.Stream) (err error) {
			req, ok := v.(Req)
			if !ok && v != nil {
				return NewError(CodeInternal, fmt.Sprintf("%s: an interceptor passed on a %T, want a %T", name, v, req))
			}
			send := func(item Item) error {
				b, err := marshal(codec, item)
				if err != nil {
					return fmt.Errorf("%s: encoding an item: %w", name, err)
				}
				return st.Send(ctx, b)
			}
			_, err = safely(m, name, func(ctx context.Context, req Req) (struct{}, error) {
				return struct{}{}, h(ctx, req, send)
			}, ctx, req)
			return err
		},
	})
}

// runStream runs the stream handler h of req: it opens the stream, runs h
// through the interceptors, and returns the stream's end.
func (m *Mux) runStream(hc *handlerContext, req *wire.Request, h *handler) wire.Response {
	in, err := h.decode(&req.FunctionCall)
	if err != nil {
		return m.failure(hc, req, err)
	}
	st, ctx, err := server.Open(hc, req)
	if err != nil {
		return m.failure(hc, req, NewError(CodeUnavailable, "starting the stream: "+err.Error()))
	}
	closed := false
	defer func() {
		if !closed { // an interceptor panicked, or the handler's goroutine exited
			st.Abort(errors.New("the stream's handler did not return"))
		}
	}()
	sc := &handlerContext{Context: ctx, info: hc.info}
	sc.info.Stream = true
	run := func(ctx context.Context, info *CallInfo, v any) (any, error) {
		err := h.stream(ctx, v, st)
		info.Items = st.Sent()
		return nil, err
	}
	if m.intercept == nil {
		_, err = run(sc, &sc.info, in)
	} else {
		sc.info.next = run
		_, err = m.intercept(sc, &sc.info, in)
	}
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cerr := st.Close(cctx)
	closed = true
	if err == nil && cerr != nil {
		err = NewError(CodeUnavailable, "sending the stream: "+cerr.Error())
	}
	resp := wire.Success(req.ID, nil)
	if err != nil {
		resp = m.failure(sc, req, err)
	}
	resp.End, resp.Seq = true, st.Pushed() // the items Redis took: the caller waits for no other
	return resp
}

// safely runs h, turning a panic into CodeInternal, so that interceptors see
// it as the error it is.
func safely[Req, Resp any](m *Mux, function string, h func(context.Context, Req) (Resp, error), ctx context.Context, req Req) (resp Resp, err error) {
	defer func() {
		if p := recover(); p != nil {
			m.cfg.logger.Error("redisrpc: handler panicked", "queue", m.queue, "function", function, "panic", p, "stack", string(debug.Stack()))
			err = NewError(CodeInternal, "internal error in "+function)
		}
	}()
	return h(ctx, req)
}

func encodeResult(codec Codec, function string, resp any) (json.RawMessage, error) {
	b, err := marshal(codec, resp)
	if err != nil {
		return nil, NewError(CodeInternal, fmt.Sprintf("%s: encoding the result: %v", function, err))
	}
	return b, nil
}

func (m *Mux) register(name string, h *handler) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.handlers.Load()
	if _, dup := old[name]; dup {
		panic("redisrpc: Handle called twice for " + name)
	}
	next := make(map[string]*handler, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[name] = h
	m.handlers.Store(&next)
}

// Serve takes requests from the queue and runs their handlers until ctx ends
// or Shutdown is called. Up to WithConcurrency handlers run at once; Serve takes
// requests only while a handler slot is free, so requests wait in Redis, not in
// memory. Where the server has fewer slots than lists (shards, and the inbox
// CallAll uses), it keeps a pop waiting on each while any slot is free, and
// each may bring a request that then waits in memory for a slot: at most one
// per list. Redis failures are logged and retried with back-off; they do not
// end Serve. Serve returns an error at once if m is already serving, and
// ErrServerClosed after Shutdown.
//
// Ending ctx is a hard stop: Serve stops taking requests, cancels the
// contexts of running handlers and returns ctx.Err() once they have returned
// and their responses are sent, or a second after the cancellation for
// handlers that ignore it, which are logged and abandoned. Handlers cut off
// this way that fail are answered with CodeUnavailable; at least once, their
// requests go back to the queue instead, for another server. Requests that
// pops bring in after the stop go back to the head of the queue, never run
// and never failed. To drain instead, call Shutdown (see its example).
func (m *Mux) Serve(ctx context.Context) error {
	err := m.server.Serve(ctx)
	switch {
	case errors.Is(err, server.ErrClosed):
		return ErrServerClosed
	case err != nil && ctx.Err() == nil:
		return fmt.Errorf("redisrpc: %w", err)
	}
	return err
}

// Shutdown stops m taking requests and waits for the running handlers to
// return, their responses to be sent and the server to leave the queue; then
// Serve returns ErrServerClosed. An idle server stops within a few round
// trips to Redis: its waiting pops are ended without losing what they take,
// which goes back to the queue. If ctx ends first, Shutdown cancels the
// handlers' contexts, as ending Serve's context does, and returns ctx.Err();
// Serve returns at most a second later, or, while Redis does not answer,
// once the stop's commands (waking its pops, giving back requests, leaving)
// time out: 5 s after the stop in all. Neither Shutdown nor a hard stop waits
// for Redis to keep its own deadline. Shutdown may be called before Serve, and more than once.
func (m *Mux) Shutdown(ctx context.Context) error { return m.server.Shutdown(ctx) }

// Stats is what a Mux has done since it was made, and what it does now.
type Stats struct {
	InFlight int    // requests taken and not yet answered
	Pops     uint64 // pops that brought requests
	Taken    uint64 // requests those pops brought: Taken/Pops is the batching
	// Functions counts calls by function. Calls of functions the Mux does
	// not serve count under "".
	Functions map[string]FunctionStats
}

// FunctionStats counts the calls of one function.
type FunctionStats struct {
	Calls  uint64
	Errors map[Code]uint64 // failed calls by code; "" for failures without one
	// Handling time, from taking the request to having its response, of the
	// calls since the Mux was made: the median, the 90th and the 99th
	// percentile, each within a fifth.
	P50, P90, P99 time.Duration
}

// Stats returns m's counts. It is safe to call while m serves.
func (m *Mux) Stats() Stats {
	pops, taken, inFlight := m.server.Counts()
	st := Stats{InFlight: int(inFlight), Pops: uint64(pops), Taken: uint64(taken), Functions: map[string]FunctionStats{}}
	add := func(name string, f *stats.Function) {
		if f.Calls.Load() == 0 {
			return
		}
		h := f.Latency.Snapshot()
		fs := FunctionStats{Calls: f.Calls.Load(), Errors: map[Code]uint64{}, P50: h.Quantile(0.5), P90: h.Quantile(0.9), P99: h.Quantile(0.99)}
		for code, n := range f.Errors() {
			fs.Errors[Code(code)] = n
		}
		st.Functions[name] = fs
	}
	for name, h := range *m.handlers.Load() {
		add(name, &h.stats)
	}
	add("", &m.unknown)
	return st
}

// Ready returns a channel closed once m's Serve has registered the server,
// the first time: it holds its lease on the queue and has published its
// entry, so clients made WithFailFast and tools (redisrpc ls) see it. It
// stays open while the beats that would register it fail (Redis down, or
// refusing the server's commands). It is meant for tests and readiness
// probes.
func (m *Mux) Ready() <-chan struct{} { return m.server.Ready() }

// HealthHandler returns an http.Handler for a platform's probes of m
// (Kubernetes' livenessProbe and readinessProbe). At a path ending in
// /livez it answers 200 while m is live: Serve runs, and its pops return
// (they fail while Redis is down, which a restart would not mend), or every
// handler slot is busy; and 503 where Serve has not started or has returned,
// or its pops have not returned for 13 s, which restarting mends.
// At any other path (/readyz) it answers 200 while m is ready: live,
// registered within its heartbeat, taking requests (its last pop answered
// within 7 s, or every slot busy) and not shutting down; else 503. The body
// says why, in a line of text. It is safe for concurrent use.
//
//	http.Handle("/livez", mux.HealthHandler())
//	http.Handle("/readyz", mux.HealthHandler())
func (m *Mux) HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := m.server.Health()
		ok := h.Ready
		if strings.HasSuffix(r.URL.Path, "/livez") {
			ok = h.Live
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintf(w, "%s %s: %s\n", map[bool]string{true: "ok", false: "failing"}[ok], m.queue, h.Reason)
	})
}

// ServeAndDrain serves until ctx ends, then drains, as a service does on
// SIGTERM: it stops taking requests and gives running handlers up to grace
// to finish, as Shutdown does. It returns nil after a clean drain, the
// Shutdown's error where grace ran out, and Serve's error where Serve ended
// otherwise.
//
//	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
//	defer stop()
//	err := mux.ServeAndDrain(ctx, 20*time.Second)
func (m *Mux) ServeAndDrain(ctx context.Context, grace time.Duration) error {
	served := make(chan error, 1)
	go func() { served <- m.Serve(context.WithoutCancel(ctx)) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	err := m.Shutdown(sctx)
	if serr := <-served; err == nil && !errors.Is(serr, ErrServerClosed) {
		err = serr
	}
	return err
}

// info is what m publishes in the registry beside what its server knows.
func (m *Mux) info() registry.Info {
	info := registry.Info{Version: version(), Stats: registry.Stats{Functions: map[string]registry.FunctionStats{}}}
	add := func(name string, f *stats.Function) {
		if f.Calls.Load() == 0 {
			return
		}
		h := f.Latency.Snapshot()
		fs := registry.FunctionStats{Calls: f.Calls.Load(), Errors: f.Errors(), Hist: h.Sparse(),
			P50US: h.Quantile(0.5).Microseconds(), P90US: h.Quantile(0.9).Microseconds(), P99US: h.Quantile(0.99).Microseconds()}
		info.Stats.Functions[name] = fs
	}
	handlers := *m.handlers.Load()
	for _, name := range slices.Sorted(maps.Keys(handlers)) {
		h := handlers[name]
		info.Functions = append(info.Functions, registry.Function{Name: name, Request: h.types[0], Response: h.types[1],
			RequestSchema: h.schemas[0], ResponseSchema: h.schemas[1], Stream: h.stream != nil})
		add(name, &h.stats)
	}
	add("", &m.unknown)
	return info
}

// version returns the version of this module in the running binary.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Path == modulePath {
			return bi.Main.Version
		}
		for _, d := range bi.Deps {
			if d.Path == modulePath {
				return d.Version
			}
		}
	}
	return "unknown"
}

const modulePath = "github.com/redisrpc/redisrpc"

// handlerContext is the context of one request's handler: it carries the
// call's CallInfo without a context.WithValue of its own.
type handlerContext struct {
	context.Context
	info CallInfo
}

func (c *handlerContext) Value(key any) any {
	if key == (callInfoKey{}) {
		return &c.info
	}
	return c.Context.Value(key)
}

// invoke runs the handler of req, through the interceptors, turns its
// outcome into a response, and counts it.
func (m *Mux) invoke(ctx context.Context, req *wire.Request) wire.Response {
	start := time.Now()
	h, missing := m.lookup(req.FunctionCall.Name)
	resp := m.run(ctx, req, h, missing)
	counts := &m.unknown
	if h != nil {
		counts = &h.stats
	}
	counts.Done(time.Since(start), resp.Failed(), resp.Code)
	return resp
}

// run runs handler h of req, or fails with missing.
func (m *Mux) run(ctx context.Context, req *wire.Request, h *handler, missing error) wire.Response {
	hc := &handlerContext{Context: ctx, info: CallInfo{
		Side: SideServer, Queue: m.queue, Function: req.FunctionCall.Name, ID: req.ID, Meta: req.Meta, Attempts: max(req.Attempt, 1),
	}}
	if req.Deadline != 0 {
		hc.info.Deadline = time.UnixMilli(req.Deadline)
	}
	if req.Sent != 0 {
		hc.info.Sent = time.UnixMilli(req.Sent)
	}
	switch {
	case h != nil && h.stream != nil && req.Stream > 0:
		return m.runStream(hc, req, h)
	case h != nil && h.stream != nil:
		return m.failure(hc, req, NewError(CodeInvalidArgument, req.FunctionCall.Name+
			" is a stream endpoint, which answers with many items: call it with redisrpc.CallStream (classic clients cannot)"))
	case h != nil && req.Stream > 0:
		return m.failure(hc, req, NewError(CodeInvalidArgument, req.FunctionCall.Name+" is not a stream endpoint: call it with redisrpc.Call"))
	}
	var result json.RawMessage
	var err error
	switch {
	case m.intercept == nil && missing != nil:
		err = missing
	case m.intercept == nil:
		result, err = h.direct(hc, &req.FunctionCall)
	default:
		var in any
		if missing == nil {
			if in, missing = h.decode(&req.FunctionCall); missing != nil {
				in = nil // interceptors see no request where none decoded
			}
		}
		hc.info.next = func(ctx context.Context, _ *CallInfo, v any) (any, error) {
			if missing != nil {
				return nil, missing
			}
			return h.call(ctx, v)
		}
		var out any
		if out, err = m.intercept(hc, &hc.info, in); err == nil {
			result, err = encodeResult(m.cfg.codec, req.FunctionCall.Name, out)
		}
	}
	if err != nil {
		return m.failure(hc, req, err)
	}
	return wire.Success(req.ID, result)
}

// lookup returns the handler of name, or the error a caller gets without one.
func (m *Mux) lookup(name string) (*handler, error) {
	if name == "" {
		return nil, NewError(CodeInvalidArgument, "request without a function name")
	}
	if h := (*m.handlers.Load())[name]; h != nil {
		return h, nil
	}
	return nil, NewError(CodeNotFound, fmt.Sprintf("no function %q", name))
}

// ownDeadline is what a caller is told of a handler that failed because a
// deadline other than the caller's passed.
const ownDeadline = "a deadline of the handler's own passed, not the caller's"

// failure turns a handler's error into the response its caller gets, as the
// package documentation lists.
func (m *Mux) failure(ctx context.Context, req *wire.Request, err error) wire.Response {
	name := req.FunctionCall.Name
	// The caller's deadline passed, by this server's clock: the only case
	// its caller is told deadline_exceeded, which matches its own
	// context.DeadlineExceeded. A deadline of the handler's own, a
	// downstream call's, is CodeUnavailable.
	expired := req.Deadline != 0 && !time.Now().Before(time.UnixMilli(req.Deadline))
	var e *Error
	switch {
	case errors.As(err, &e) && e.Code == CodeDeadlineExceeded && !expired:
		msg := ownDeadline + ": " + e.Message
		if server.CutOff(ctx) {
			msg = "the server stopped before the handler returned: " + e.Message
		}
		return wire.Failure(req.ID, string(CodeUnavailable), msg)
	case errors.As(err, &e) && e.cause != nil && m.cfg.redact:
		// A failure of the handler's own calls, made by a Client here: its
		// text names addresses of this side.
		m.cfg.logger.Error("redisrpc: handler failed", "queue", m.queue, "function", name, "id", req.ID, "err", err)
		return wire.Failure(req.ID, string(e.Code), "a call of the handler's own failed")
	case errors.As(err, &e):
		resp := wire.Failure(req.ID, string(e.Code), e.Message)
		if e.Details != nil {
			details, derr := json.Marshal(e.Details)
			if derr != nil {
				m.cfg.logger.Error("redisrpc: encoding the details of an error", "queue", m.queue, "function", name, "err", derr)
				return wire.Failure(req.ID, string(CodeInternal), fmt.Sprintf("%s: encoding the error details: %v", name, derr))
			}
			resp.Details = details
		}
		return resp
	case server.CutOff(ctx):
		msg := "the server stopped before the handler returned"
		if !m.cfg.redact {
			msg += ": " + err.Error()
		}
		return wire.Failure(req.ID, string(CodeUnavailable), msg)
	case errors.Is(err, context.DeadlineExceeded):
		code, msg, redacted := CodeDeadlineExceeded, err.Error(), "deadline exceeded"
		if !expired {
			code, msg, redacted = CodeUnavailable, ownDeadline+": "+msg, ownDeadline
		}
		if m.cfg.redact {
			m.cfg.logger.Error("redisrpc: handler failed", "queue", m.queue, "function", name, "id", req.ID, "err", err)
			msg = redacted
		}
		return wire.Failure(req.ID, string(code), msg)
	case m.cfg.redact:
		m.cfg.logger.Error("redisrpc: handler failed", "queue", m.queue, "function", name, "id", req.ID, "err", err)
		return wire.Failure(req.ID, string(CodeInternal), "internal error")
	}
	return wire.Failure(req.ID, "", err.Error())
}

// members lists names for a sentence: the member "a", the members "a" and "b".
func members(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	if len(q) == 1 {
		return "the member " + q[0]
	}
	return "the members " + strings.Join(q[:len(q)-1], ", ") + " and " + q[len(q)-1]
}
