package redisrpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/internal/server"
	"github.com/redisrpc/redisrpc/internal/wire"
)

// handlerFunc is the one untyped shape every typed handler becomes: it takes the
// function call as it came and returns the encoded result.
type handlerFunc func(ctx context.Context, fc *wire.FunctionCall) (json.RawMessage, error)

// Mux serves the functions registered on it from one request queue. Register
// handlers with Handle, then call Serve. It is safe for concurrent use; handlers
// may be added while it serves.
type Mux struct {
	queue  string
	opts   options
	server *server.Server

	mu       sync.Mutex
	handlers atomic.Pointer[map[string]handlerFunc] // copied on write
}

// NewMux returns a Mux serving the request queue queue. It uses rc and never
// closes it. It panics if rc is nil or queue is empty.
func NewMux(rc rueidis.Client, queue string, opts ...Option) *Mux {
	mustQueue(rc, queue)
	o := newOptions(opts)
	m := &Mux{queue: queue, opts: o}
	m.server = server.New(rc, server.Config{
		Queue:       queue,
		ID:          randomName(16),
		Shards:      o.shards,
		Concurrency: o.concurrency,
		MaxMessage:  o.maxMessage,
		ResponseTTL: o.responseTTL,
		Lease:       o.heartbeat,
		Reliable:    o.atLeastOnce,
		Logger:      o.logger,
	}, m.invoke)
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
// memory. Redis failures are logged and retried with back-off; they do not end
// Serve. Serve returns an error at once if m is already serving, and
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
// return, their responses to be sent and, at least once, the server to leave
// the queue; then Serve returns ErrServerClosed. An idle server stops within
// a few round trips to Redis: its waiting pops are ended without losing what
// they take, which goes back to the queue. If ctx ends first, Shutdown cancels
// the handlers' contexts, as ending Serve's context does, and returns
// ctx.Err(); Serve returns at most a second later. Shutdown may be called
// before Serve, and more than once.
func (m *Mux) Shutdown(ctx context.Context) error { return m.server.Shutdown(ctx) }

// invoke runs the handler of req and turns its outcome into a response.
func (m *Mux) invoke(ctx context.Context, req *wire.Request) wire.Response {
	name := req.FunctionCall.Name
	if name == "" {
		return wire.Failure(req.ID, string(CodeInvalidArgument), "request without a function name")
	}
	h := (*m.handlers.Load())[name]
	if h == nil {
		return wire.Failure(req.ID, string(CodeNotFound), fmt.Sprintf("no function %q", name))
	}
	if len(req.Meta) > 0 {
		ctx = context.WithValue(ctx, incomingMetaKey{}, req.Meta)
	}
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

type incomingMetaKey struct{}

// MetaFromContext returns the metadata the caller sent with the request a
// handler serves, or nil. The map must not be modified.
func MetaFromContext(ctx context.Context) map[string]string {
	m, _ := ctx.Value(incomingMetaKey{}).(map[string]string)
	return m
}
