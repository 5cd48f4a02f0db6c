// Package redisrpc is remote procedure calls over Redis lists: typed endpoints, a
// server-side Mux and a generic Call, speaking the JSON protocol of the classic
// redisrpc implementations for Python, Ruby and PHP.
//
// # Example
//
//	var Add = redisrpc.NewEndpoint[float64, float64]("add")
//
//	// Server: serve the request queue "calc" until ctx ends or Shutdown.
//	mux := redisrpc.NewMux(rc, "calc") // rc is a rueidis.Client
//	redisrpc.Handle(mux, Add, func(ctx context.Context, x float64) (float64, error) {
//		total += x
//		return total, nil
//	})
//	go mux.Serve(ctx)
//
//	// Client: call it from anywhere.
//	c := redisrpc.NewClient(rc, "calc")
//	defer c.Close()
//	sum, err := redisrpc.Call(ctx, c, Add, 5)
//
// # Wire format
//
// A service is a Redis list, its request queue. A client appends a request with RPUSH:
//
//	{"function_call": {"name": "add", "args": [5]}, "response_queue": "calc:rpc:K3...",
//	 "id": "1f", "deadline": 1764050000000, "sent": 1764049999000,
//	 "meta": {"traceparent": "..."}}
//
// A server pops it, runs the handler and appends the response to the response queue,
// which it gives an expiry (WithResponseTTL):
//
//	{"return_value": 5, "id": "1f"}
//	{"exception": "not enough stock", "code": "out_of_stock", "details": {"left": 2}, "id": "1f"}
//
// id, deadline, sent, meta, code and details are optional; classic peers
// ignore them. A server writes only to lists inside "<queue>:rpc:" and logs
// and drops requests naming any other key. The full contract, with every key
// a server uses, is docs/protocol.md:
// https://github.com/redisrpc/redisrpc/blob/main/docs/protocol.md
//
// Arguments map onto the request type Req like this: no arguments give the zero
// Req; one positional argument is decoded into Req; named arguments (kwargs) are
// decoded into Req as an object; several positional arguments are decoded into Req
// as an array. A Client sends Req as one positional argument, or as none when Req
// is an empty struct; see WithNamedArgs and WithPositionalArgs for the other forms.
// Req and Resp are encoded with DefaultCodec (goccy/go-json, held to
// encoding/json's results), or with the Codec given WithCodec: StdJSON for
// encoding/json alone.
//
// # Connections
//
// A Client receives all its responses on one shared list, <queue>:rpc:<client
// id>, matched to calls by id: any number of concurrent calls share two waiting
// pops (two of rueidis' blocking connections) and its pipelined connections.
// Requests sent while others are in flight travel together in one RPUSH. A Mux
// keeps two pops waiting on its queue, taking up to as many requests as it has
// free handler slots, and pushes the responses that are ready together, one
// RPUSH and one EXPIRE per response list. With WithClassicServer each call
// instead waits on a list of its own, as classic clients do, and holds one
// blocking connection while it waits.
//
// Pops use BLMPOP with a count on Redis 7 and BLPOP followed by LPOP with a
// count elsewhere, and wait at most a second. A stopping server ends its own
// waiting pops at once without losing what they take: at most once, each pop
// also waits on a list of the server's own, where Shutdown pushes a token; at
// least once, the pop is cancelled, and what it moved stays in the server's
// processing list, which is given back.
//
// # Delivery
//
// At most once (the default, as in the classic implementations): a server
// removes a request from the queue when it takes it, so the request runs at most
// once and is never duplicated. It is lost, and its caller gets its deadline
// error, if the server dies between taking it and pushing the response, or if
// Redis loses it. A request whose deadline passed before a server took it is not
// run.
//
// At least once (WithAtLeastOnce on the Mux): a server moves each request
// atomically from the queue to a processing list of its own and removes it only
// after the response is pushed. Every server holds a lease on the queue,
// renewed every third of WithHeartbeat (10s by default); when a lease runs
// out, the other servers put that server's requests back at the head of the
// queue, oldest first, and go on doing so for ten seconds more, for requests
// that a pop it sent before it stalled still moves there. A server also gives
// back requests of its own processing list that nothing of it has held for
// five seconds, a pop's longest, checked at every beat: those whose pop reply
// was lost, whose response Redis refused, or whose removal failed. A request is then
// lost only if Redis loses it. It may run more than once: when a server dies
// after its handler ran but before the response was pushed, when a response
// or its removal fails, or when a server stalls for longer than the heartbeat
// while its requests are given to others. Handlers must be idempotent in this
// mode. A request given back WithMaxDeliveries times (3) is not run again: it
// goes to the queue's dead letters and its caller gets CodeInternal, so that
// a request that kills its servers cannot take down a fleet. A Client
// delivers one response to a call and drops any other for it; requests found
// past their deadline are dropped, not re-run. Classic clients get the same
// guarantee, which lives in the server. What survives a crash of Redis is
// what its persistence keeps: with appendfsync always, every request Redis
// took, and an answer and the removal of its request are one transaction, so
// none runs again once its caller has the answer (on Redis Cluster, only for
// a Go client's calls on the queue itself, whose slot its response list
// shares: a transaction keeps to one slot). A response
// stays in Redis only until a client's pop takes it: responses Redis was
// sending to a client when it died are lost, and their calls end with their
// deadline error although their requests ran, unless the servers keep
// answers. At least once, a server whose response Redis refuses or cannot
// take pushes it again, with back-off, while its caller waits, and holds the
// request meanwhile, so that it does not run again.
//
// Answered once (WithDedupe on the Mux, which implies at least once): a
// server keeps each answer, under its caller's response queue and id, in
// the transaction that pushes it and removes its request, for a window (30
// s by default) or until the request's deadline where later. A request that
// comes back after it was answered is answered from what was kept and not
// run: a Client's retry, the resend of a response lost in a failure of
// Redis, a request given back after its removal was lost; and a dead letter
// whose answer was kept is not requeued (inspect.ErrKept). A Client whose live servers all keep answers finds, once
// receiving works again after Redis failed, the calls whose requests are in
// no list of Redis (queue, processing lists) and whose responses are in
// none either, and sends them again (attempt 2 and up), so that no response
// is lost to a crash of Redis. What still runs twice: a request whose server
// dies, or loses Redis for longer than its heartbeat, while its handler
// runs; the request is given back with no answer kept. Killing Redis (-9,
// appendfsync always) 20 times under 64 callers with two such servers and
// two WithRetries(10) clients: all 33,924 calls of one run answered, none
// run twice (TestEffectivelyOnce).
//
// Retries (WithRetries on the Client): a call is sent again, with the same
// id, only where that cannot run its request twice: where it cannot have
// reached a server, and, where the servers keep answers, after any failure
// to push whose request Redis does not hold, and after CodeUnavailable.
// A budget shared by the Client's calls bounds the sends made again.
//
// Stopping: requests a stopping server has taken but not started go back to
// the head of the queue in both modes, never run and never failed. Handlers
// cut off by a hard stop (Serve's context ending, or Shutdown's) that fail
// answer CodeUnavailable at most once; at least once their requests go back
// to the queue. A handler that calls runtime.Goexit answers CodeInternal.
//
// Keys: the queue; <tag>:leases, a sorted set of its servers (both modes);
// at least once <tag>:processing:<server>; at most once, while a server
// stops, <tag>:wake:<server>.<n> (with a TTL). <tag> is {queue} where the
// queue's name holds no '}' ("{calc}" for calc), else a hash tag in its slot
// followed by the name ("{calc}{calc}" for {calc}), so that every key of a
// queue shares its hash slot on Redis Cluster, whatever braces its name
// holds, and no two queues share a key.
// Response lists expire (WithResponseTTL). docs/protocol.md lists them all.
//
// # Timeouts and failures
//
// The caller's context deadline travels with the request, as Unix
// milliseconds (deadlines past 2^53-1 ms, in the year 287396, are sent as
// that); a call whose context has none gets the Client's WithCallTimeout (30
// seconds by default), so that no call waits for ever. A server answers
// CodeInvalidArgument to a deadline that is not a number from 1 to 2^53-1,
// does not start a request whose deadline has passed, and ends the handler's
// context at the deadline. Call returns when its context ends, with an error
// that matches ctx.Err() under errors.Is.
//
// A failure reported by the remote side is an *Error with a Code, a Message
// and, optionally, Details. What a caller sees of a handler's error:
//
//   - an *Error, or an error wrapping one (fmt.Errorf("x: %w", e)): that
//     *Error's code, message and details; the wrapping text is not sent;
//   - context.DeadlineExceeded, or an *Error with CodeDeadlineExceeded, once
//     the caller's deadline passed (the handler's context ended with it):
//     CodeDeadlineExceeded, which alone matches context.DeadlineExceeded
//     under errors.Is on the caller's side;
//   - the same before the caller's deadline, as when a handler's own timeout
//     on a downstream call fired: CodeUnavailable, "a deadline of the
//     handler's own passed, not the caller's", so that the caller does not
//     take it for its own deadline;
//   - any error, when the server's stop cut the handler off: CodeUnavailable;
//   - any other error: its text, verbatim, with no code, or with
//     WithRedactedErrors on the Mux, CodeInternal and "internal error", the
//     text being logged by the server instead (WithRedactedErrors also keeps
//     the text of the deadline errors above from the caller);
//   - a panic, or runtime.Goexit: CodeInternal.
//
// Redis and network failures of a call are an *Error with CodeUnavailable
// that wraps the failure (errors.Is and errors.As reach it); they are never
// retried.
//
// # Streams
//
// A stream endpoint (NewStream) answers one request with many items, in
// order, each once, then an end: HandleStream serves it, CallStream ranges
// over it (an iter.Seq2). At most WithStreamWindow items wait unread; the
// caller grants more as it reads, and breaking out of the loop ends the
// handler's context. A server that goes silent for its heartbeat fails the
// stream with CodeUnavailable. Streams are at most once.
//
// # The contract
//
// Handle publishes each function's request and response types in the
// registry as JSON Schema, derived from the Go types as the codec encodes
// them (Describer lets a type give its own). A Client compares its
// endpoint's types with them and logs each drift once: a member one side
// sends that the other does not read, or reads as another type.
// WithStrictContract fails such calls with CodeInvalidArgument, unsent, and
// WithStrictDecoding on the Mux answers requests with members the handler's
// type lacks the same way. The redisrpc command prints the schemas (schema)
// and compares the live servers with a saved contract (check). See
// docs/protocol.md and README.md.
package redisrpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/internal/client"
	"github.com/redisrpc/redisrpc/internal/contract"
	"github.com/redisrpc/redisrpc/internal/server"
	"github.com/redisrpc/redisrpc/internal/wire"
)

// Code classifies a failure. The protocol defines the constants below; a handler
// may use a word of its own.
type Code string

// The codes of the protocol.
const (
	CodeInvalidArgument  Code = wire.CodeInvalidArgument  // arguments do not fit the function
	CodeNotFound         Code = wire.CodeNotFound         // no such function
	CodeDeadlineExceeded Code = wire.CodeDeadlineExceeded // the deadline passed
	CodeInternal         Code = wire.CodeInternal         // the handler panicked or its result did not encode
	CodeUnavailable      Code = wire.CodeUnavailable      // the service cannot serve now
)

// Error is a failure reported by the remote side of a call, or returned by a
// handler to choose what its caller sees. Code is empty when the server sent
// none, as classic servers do. Details is optional structured data for
// programs: a handler sets any value that encodes as JSON (see WithDetails);
// a caller finds the JSON as a json.RawMessage and reads it with
// ErrorDetails.
type Error struct {
	Code    Code
	Message string
	Details any

	cause error // the local failure behind an error made on this side, if any
}

// NewError returns an *Error with the given code and message.
func NewError(code Code, message string) *Error { return &Error{Code: code, Message: message} }

// WithDetails returns a copy of e carrying details, which must encode as
// JSON; a handler that returns it sends them to its caller.
func (e *Error) WithDetails(details any) *Error {
	c := *e
	c.Details = details
	return &c
}

// Error returns "code: message", or the message alone when there is no code.
func (e *Error) Error() string {
	if e.Code == "" {
		return e.Message
	}
	return string(e.Code) + ": " + e.Message
}

// Is reports whether an error with CodeDeadlineExceeded is matched against
// context.DeadlineExceeded, so that a server's verdict and the caller's own
// timeout are tested the same way. A server answers CodeDeadlineExceeded only
// where the caller's deadline passed.
func (e *Error) Is(target error) bool {
	return target == context.DeadlineExceeded && e.Code == CodeDeadlineExceeded
}

// Unwrap returns the local failure behind e: for CodeUnavailable made by a
// Client when Redis failed, Redis' or the network's error. It returns nil
// for failures reported by the remote side.
func (e *Error) Unwrap() error { return e.cause }

// unavailable is the error of a call that Redis or the network failed. A
// timeout of the library's own (a send's, 5 s) keeps its text and its chain
// for errors.As, but not its context.DeadlineExceeded for errors.Is, which
// only the caller's deadline may match.
func unavailable(err error) error {
	cause := err
	if errors.Is(err, context.DeadlineExceeded) {
		cause = ownTimeout{err}
	}
	return &Error{Code: CodeUnavailable, Message: err.Error(), cause: cause}
}

// ownTimeout is err, a timeout of the library's own, with its chain open to
// errors.As (the client's retries look in it for what failed) and closed to
// errors.Is.
type ownTimeout struct{ err error }

func (e ownTimeout) Error() string      { return e.err.Error() }
func (e ownTimeout) As(target any) bool { return errors.As(e.err, target) }

// CodeOf returns the Code of the first *Error in err's chain,
// CodeDeadlineExceeded for errors matching context.DeadlineExceeded, and ""
// for nil and all other errors.
func CodeOf(err error) Code {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e.Code
	case errors.Is(err, context.DeadlineExceeded):
		return CodeDeadlineExceeded
	}
	return ""
}

// ErrorDetails decodes the details of the first *Error in err's chain into a
// T. It reports false where there is no *Error, it has no details, or they
// do not decode into a T.
func ErrorDetails[T any](err error) (T, bool) {
	var d T
	var e *Error
	if !errors.As(err, &e) || e.Details == nil {
		return d, false
	}
	if v, ok := e.Details.(T); ok {
		return v, true
	}
	raw, ok := e.Details.(json.RawMessage)
	if !ok {
		var err error
		if raw, err = json.Marshal(e.Details); err != nil {
			return d, false
		}
	}
	return d, json.Unmarshal(raw, &d) == nil
}

var (
	// ErrServerClosed is returned by Mux.Serve after Shutdown.
	ErrServerClosed = errors.New("redisrpc: server closed")
	// ErrClientClosed is returned by calls on a closed Client.
	ErrClientClosed = errors.New("redisrpc: client closed")
	// ErrClassicServer is returned by calls whose response came without an id, as
	// classic servers send them; such servers need a Client made WithClassicServer.
	ErrClassicServer = errors.New("redisrpc: response without id: the server looks classic; use WithClassicServer")
	// ErrTooLarge is returned by calls whose request or response is larger
	// than the Client's WithMaxMessageSize.
	ErrTooLarge = errors.New("redisrpc: message too large")
	// ErrStreamCanceled is what a stream handler's send returns once its
	// caller has gone: it stopped reading, or its context ended; the
	// handler's context ends with it as the cause.
	ErrStreamCanceled = server.ErrCallerGone
)

// callError is a failed call of a function: "redisrpc: <function>: <why>",
// without repeating the package's prefix where why has it.
type callError struct {
	function string
	err      error
}

func (e *callError) Error() string {
	msg := strings.TrimPrefix(e.err.Error(), "redisrpc: ")
	if e.function == "" { // a zero Endpoint
		return "redisrpc: " + msg
	}
	return "redisrpc: " + e.function + ": " + msg
}

func (e *callError) Unwrap() error { return e.err }

// Option configures both a Mux and a Client.
type Option interface {
	ClientOption
	MuxOption
}

// ClientOption configures a Client.
type ClientOption interface{ applyToClient(*clientConfig) }

// MuxOption configures a Mux.
type MuxOption interface{ applyToMux(*muxConfig) }

// shared is what options meaningful to both a Mux and a Client set.
type shared struct {
	logger       *slog.Logger
	shards       int
	maxMessage   int
	interceptors []Interceptor
	codec        Codec
}

func defaultShared() shared {
	return shared{logger: slog.Default(), shards: 1, maxMessage: 1 << 20, codec: DefaultCodec}
}

type option func(*shared)

func (o option) applyToClient(c *clientConfig) { o(&c.shared) }
func (o option) applyToMux(c *muxConfig)       { o(&c.shared) }

type clientOption func(*clientConfig)

func (o clientOption) applyToClient(c *clientConfig) { o(c) }

// WithLogger sets where a Mux or Client logs dropped messages and Redis
// failures. The default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return option(func(o *shared) {
		if l != nil {
			o.logger = l
		}
	})
}

// WithShards spreads a service over n request lists on different hash slots,
// and so, on Redis Cluster, over different masters: the queue itself and n-1
// lists named after it. A Client sends each call to the next list in turn of
// those its servers registered (it reads the registry every two seconds),
// and to the queue itself, which every Mux serves, while none is live,
// their counts differ or the registry cannot be read: a Client follows its
// servers, and its own n matters only to a shared option list; a Mux keeps a
// pop waiting on each and takes from each at most an equal share
// of its free handler slots. Requests are taken in order within a list, not
// across lists. Give a service's clients and servers the same n; classic
// clients use the queue itself, which every Mux serves. The default is 1;
// values above 1024 mean 1024.
func WithShards(n int) Option {
	return option(func(o *shared) { o.shards = max(n, 1) })
}

// WithMaxMessageSize bounds the messages a Mux or Client accepts, in bytes.
// A Mux answers larger requests with CodeInvalidArgument without decoding or
// copying them; a Client refuses to send a larger request and fails a call
// whose response is larger, both with ErrTooLarge. The default is 1 MiB;
// values below 64 mean 64.
func WithMaxMessageSize(n int) Option {
	return option(func(o *shared) { o.maxMessage = max(n, 64) })
}

// WithCodec sets the Codec of the requests and responses a Client sends and
// receives, or of the arguments and results of a Mux's handlers: StdJSON for
// encoding/json alone. The default, or nil, is DefaultCodec.
func WithCodec(c Codec) Option {
	return option(func(o *shared) {
		if c == nil {
			c = DefaultCodec
		}
		o.codec = c
	})
}

// WithInterceptors adds interceptors to every call a Client makes or a Mux
// serves, after those added before. The first interceptor is the outermost:
// it sees a call first and its result last.
func WithInterceptors(interceptors ...Interceptor) Option {
	return option(func(o *shared) { o.interceptors = append(o.interceptors, interceptors...) })
}

type clientConfig struct {
	shared
	classic        bool
	forward        bool
	failFast       bool
	timeout        time.Duration
	maxInFlight    int
	retries        int
	strictContract bool
	window         int // of streams (WithStreamWindow)
}

// WithRetries makes a Client send a call again, up to n times, with the same
// request id, after a failure that allows it: where the request cannot have
// reached a server (WithFailFast found none live; Redis refused the push or
// could not be reached), and, where every live server keeps answers
// (WithDedupe), after any failure to push whose request Redis does not
// hold, and after an answer with CodeUnavailable. Without WithDedupe on the
// servers, a call that may have reached one is never sent again. Each send
// waits a back-off with jitter, doubling from 200ms (between half and all
// of it) up to 5 s, within the call's deadline, and takes a token of a
// budget the Client shares among its calls: 20 tokens, regained at 10 a
// second and one for each call that succeeds, so that an outage does not
// multiply the load on Redis; a send that finds none waits for one. The
// call ends with its last failure. Interceptors see one call; CallInfo's
// Attempts counts its sends. It has no effect WithClassicServer, nor on
// CallAll, whose calls are sent once. The default is 0: calls are not sent
// again, but after a response lost in a failure of Redis (see WithDedupe).
func WithRetries(n int) ClientOption {
	return clientOption(func(c *clientConfig) { c.retries = max(n, 0) })
}

// WithMaxInFlight bounds how many calls a Client has in flight, so that a
// client cannot grow without bound: a call beyond it waits for another to
// end, until its context ends, when it returns ctx.Err() without having
// sent its request. The default is 10,000; values below 1 mean 1.
func WithMaxInFlight(n int) ClientOption {
	return clientOption(func(c *clientConfig) { c.maxInFlight = max(n, 1) })
}

// WithFailFast makes a Client's calls fail at once with CodeUnavailable
// while the registry shows no live server of its queue, rather than wait in
// the queue for one. The Client reads the registry at its first call and
// every two seconds after, never on the way of a call; a server counts as
// live until it stops, or until its heartbeat lapses when it dies. It has no
// effect WithClassicServer, as classic servers do not register. By default
// calls wait for a server until their deadline, as requests wait in Redis
// while servers restart.
func WithFailFast() ClientOption {
	return clientOption(func(c *clientConfig) { c.failFast = true })
}

// WithClassicServer makes a Client wait for each response on a list of its own,
// as classic clients do, because classic servers do not echo ids. Such calls
// work with every server but each one holds a Redis connection while it waits.
func WithClassicServer() ClientOption {
	return clientOption(func(c *clientConfig) { c.classic = true })
}

// WithMetaForwarding makes a Client's calls made from a handler's context
// carry the metadata the handler's caller sent, under the metadata set with
// WithOutgoingMeta, which wins where both have a key. The trace context
// (traceparent, tracestate) is not forwarded: it is the tracer's to set for
// each hop (redisrpcotel does), and the caller's would make the next server's
// span a child of the wrong one. By default a handler's calls send only what
// WithOutgoingMeta sets.
func WithMetaForwarding() ClientOption {
	return clientOption(func(c *clientConfig) { c.forward = true })
}

// WithStrictContract makes a Client's calls of an endpoint whose types break
// the contract of the live servers fail at once, unsent, with
// CodeInvalidArgument and the text of the drift: a member the client sends
// that the server's request type lacks, one the server reads that the client
// never sends, one the client reads that the server never sends, or a member
// of another type (Mux.Handle publishes each function's schemas in the
// registry). A member the server sends that the client's response type lacks
// breaks nothing, and is logged alone. By default every drift is logged, once
// per endpoint, and calls go on.
func WithStrictContract() ClientOption {
	return clientOption(func(c *clientConfig) { c.strictContract = true })
}

// WithStreamWindow sets how many items of a stream (CallStream) may wait
// unread, in Redis and in the Client, before its server's send blocks: the
// flow control of streams. The default is 512; at most 100,000.
func WithStreamWindow(n int) ClientOption {
	return clientOption(func(c *clientConfig) {
		if n > 0 {
			c.window = min(n, wire.MaxWindow)
		}
	})
}

// WithCallTimeout sets the deadline of calls whose context has none, so that
// no call waits for ever and none of its requests waits in the queue for
// ever: servers drop requests past their deadline. The default is 30
// seconds; values of 0 or less mean the default.
func WithCallTimeout(d time.Duration) ClientOption {
	return clientOption(func(c *clientConfig) {
		if d > 0 {
			c.timeout = d
		}
	})
}

// Client calls the functions served on one request queue. It is safe for
// concurrent use. Its zero value is not usable; make one with NewClient.
type Client struct {
	queue     string
	cfg       clientConfig
	engine    *client.Client
	call      CallFunc // the interceptors around send, or nil without any
	contracts contract.Checker
}

// NewClient returns a Client for the service whose request queue is queue. It
// uses rc and never closes it. It panics if rc is nil or queue is empty. From
// its first call until Close, a Client keeps goroutines that send requests and
// read the registry: Close a Client you no longer need.
func NewClient(rc rueidis.Client, queue string, opts ...ClientOption) *Client {
	mustQueue(rc, queue)
	cfg := clientConfig{shared: defaultShared(), timeout: 30 * time.Second, maxInFlight: 10_000, window: 512}
	for _, o := range opts {
		o.applyToClient(&cfg)
	}
	c := &Client{queue: queue, cfg: cfg, contracts: contract.Checker{Logger: cfg.logger, Queue: queue}}
	c.engine = client.New(rc, client.Config{
		Queue: queue, Classic: cfg.classic, Logger: cfg.logger, MaxMessage: cfg.maxMessage,
		Closed: ErrClientClosed, NoID: ErrClassicServer, TooLarge: ErrTooLarge,
		FailFast: cfg.failFast, Unavailable: &Error{Code: CodeUnavailable, Message: "no live server of " + queue + " is registered"},
		MaxInFlight: cfg.maxInFlight, Transport: unavailable, Retries: cfg.retries,
	})
	if len(cfg.interceptors) > 0 {
		c.call = chain(cfg.interceptors, nil)
	}
	return c
}

// Queue returns the request queue of the service c calls.
func (c *Client) Queue() string { return c.queue }

// Close stops the client: calls in flight and later calls fail with
// ErrClientClosed, and requests not yet sent are not sent. It waits for the
// client's goroutines (its two receivers and its request sender) to end, so
// that nothing reaches Redis from c after it returns, and does not close the
// rueidis client. It is safe to call more than once.
func (c *Client) Close() error {
	c.engine.Close()
	return nil
}

// Call calls endpoint e on the service of c with req and returns its result.
// It returns when the response arrives or ctx ends, whichever is first; ctx's
// deadline, or WithCallTimeout, travels with the request.
//
// Errors: an *Error when the server reported a failure (use errors.As,
// CodeOf or ErrorDetails); an error matching ctx.Err() when ctx ended first;
// ErrClientClosed, ErrClassicServer, ErrTooLarge, or a wrapped Redis error
// otherwise. Each names the function: "redisrpc: add: ...".
func Call[Req, Resp any](ctx context.Context, c *Client, e Endpoint[Req, Resp], req Req) (Resp, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.timeout)
		defer cancel()
	}
	return call(ctx, c, e, req, "")
}

// call makes one call, through the interceptors, to the queue or, where
// server is set, to that server alone.
func call[Req, Resp any](ctx context.Context, c *Client, e Endpoint[Req, Resp], req Req, server string) (Resp, error) {
	var resp Resp
	var err error
	if c.call == nil {
		// A CallInfo of its own, which does not leave the stack here.
		info := CallInfo{Side: SideClient, Queue: c.queue, Function: e.name, ID: c.engine.NewID(), Meta: c.meta(ctx)}
		info.Deadline, _ = ctx.Deadline()
		resp, err = send(ctx, c, e, &info, req, server)
	} else {
		info := &CallInfo{Side: SideClient, Queue: c.queue, Function: e.name, ID: c.engine.NewID(), Meta: c.meta(ctx)}
		info.Deadline, _ = ctx.Deadline()
		info.next = func(ctx context.Context, info *CallInfo, v any) (any, error) {
			req, ok := v.(Req)
			if !ok {
				return nil, fmt.Errorf("an interceptor passed on a %T, want a %T", v, req)
			}
			return send(ctx, c, e, info, req, server)
		}
		var out any
		out, err = c.call(ctx, info, req)
		if err == nil {
			var ok bool
			if resp, ok = out.(Resp); !ok && out != nil {
				err = fmt.Errorf("an interceptor returned a %T, want a %T", out, resp)
			}
		}
	}
	if err != nil {
		return resp, &callError{function: e.name, err: err}
	}
	return resp, nil
}

// CallStream calls the stream endpoint s with req and returns its items, in
// order, each once, as they come: range over it. The iteration ends after
// the last item, or with one error: the handler's (an *Error, as Call
// returns them), ctx's, or an *Error with CodeUnavailable where the server
// sent nothing, not even a beat, for its heartbeat (it died, or lost Redis;
// streams are at most once and never sent again). Breaking out of the loop,
// or ctx ending, cancels the stream: the handler's context ends within 100
// ms. ctx's deadline and metadata travel as for Call; without a deadline a
// stream runs until it ends, once it has started: one no server has started
// within WithCallTimeout (30 s by default) fails with CodeUnavailable. At most
// WithStreamWindow items wait unread. Interceptors see the whole stream as
// one call, whose CallInfo counts its Items.
func CallStream[Req, Item any](ctx context.Context, c *Client, s Stream[Req, Item], req Req) iter.Seq2[Item, error] {
	return func(yield func(Item, error) bool) {
		e := s.e
		info := &CallInfo{Side: SideClient, Queue: c.queue, Function: e.name, ID: c.engine.NewID(), Meta: c.meta(ctx), Stream: true, Attempts: 1}
		info.Deadline, _ = ctx.Deadline()
		stopped := false // the loop broke
		receive := func(ctx context.Context, info *CallInfo, v any) (any, error) {
			req, ok := v.(Req)
			if !ok && v != nil {
				return nil, fmt.Errorf("an interceptor passed on a %T, want a %T", v, req)
			}
			if err := c.checkContract(ctx, e.name, reflect.TypeFor[Req](), reflect.TypeFor[Item](), layouts[e.style]); err != nil {
				return nil, err
			}
			fc, err := e.encode(c.cfg.codec, req)
			if err != nil {
				return nil, err
			}
			r := wire.Request{FunctionCall: fc, ID: info.ID, Meta: info.Meta}
			if !info.Deadline.IsZero() {
				r.Deadline = wire.Deadline(info.Deadline)
			}
			st, err := c.engine.OpenStream(ctx, &r, c.cfg.window, c.cfg.timeout)
			if err != nil {
				return nil, err
			}
			defer st.Close()
			for {
				m, err := st.Next(ctx)
				if err != nil {
					return nil, err
				}
				if m.Kind == wire.KindEnd {
					if m.End.Failed() {
						_, err := decodeResponse(string(wire.AppendResponse(nil, &m.End)))
						return nil, err
					}
					return nil, nil
				}
				var item Item
				if err := c.cfg.codec.Unmarshal(m.Item, &item); err != nil {
					return nil, fmt.Errorf("decoding item %d: %w", m.Seq, err)
				}
				info.Items++
				if !yield(item, nil) {
					stopped = true
					return nil, nil
				}
			}
		}
		var err error
		if c.call == nil {
			_, err = receive(ctx, info, req)
		} else {
			info.next = receive
			_, err = c.call(ctx, info, req)
		}
		if err != nil && !stopped {
			var zero Item
			yield(zero, &callError{function: e.name, err: err})
		}
	}
}

// Result is one server's answer to CallAll.
type Result[Resp any] struct {
	Server string // the server's id in the registry
	Value  Resp
	Err    error // as Call returns them
}

// CallAll calls endpoint e with req on every live server of c's queue at
// once, not on one of them as Call does, and returns their answers, one per
// server, once all have answered or ctx has ended: a server that has not
// answered by then has ctx's error. It is for cache flushes, configuration
// reloads, health probes. Each request goes to the server's own inbox, a
// list it alone takes from (docs/protocol.md), and expires from it at the
// call's deadline; servers run such requests at most once, whatever their
// delivery mode. The live servers are read from the registry when CallAll
// starts; classic servers, which do not register, are not called. ctx's
// deadline, or WithCallTimeout, travels with the requests.
//
// CallAll returns an error only when the registry cannot be read; with no
// live server it returns no results.
func CallAll[Req, Resp any](ctx context.Context, c *Client, e Endpoint[Req, Resp], req Req) ([]Result[Resp], error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.timeout)
		defer cancel()
	}
	servers, err := c.engine.Live(ctx)
	if err != nil {
		return nil, &callError{function: e.name, err: unavailable(fmt.Errorf("reading the registry: %w", err))}
	}
	results := make([]Result[Resp], len(servers))
	var wg sync.WaitGroup
	for i, server := range servers {
		wg.Go(func() {
			v, err := call(ctx, c, e, req, server)
			results[i] = Result[Resp]{Server: server, Value: v, Err: err}
		})
	}
	wg.Wait()
	return results, nil
}

// send encodes req, sends it, and decodes the response: the innermost step of
// a call, around which interceptors run.
func send[Req, Resp any](ctx context.Context, c *Client, e Endpoint[Req, Resp], info *CallInfo, req Req, server string) (Resp, error) {
	var resp Resp
	if err := c.checkContract(ctx, e.name, reflect.TypeFor[Req](), reflect.TypeFor[Resp](), layouts[e.style]); err != nil {
		return resp, err
	}
	fc, err := e.encode(c.cfg.codec, req)
	if err != nil {
		return resp, err
	}
	r := wire.Request{FunctionCall: fc, ID: info.ID, Meta: info.Meta}
	if !info.Deadline.IsZero() {
		r.Deadline = wire.Deadline(info.Deadline)
	}
	var raw string
	if server == "" {
		raw, err = c.engine.Call(ctx, &r, &info.Attempts)
	} else {
		info.Attempts = 1 // a server's inbox is served at most once: never sent again
		raw, err = c.engine.CallServer(ctx, &r, server)
	}
	if err != nil {
		return resp, err
	}
	result, err := decodeResponse(raw)
	if err != nil {
		return resp, err
	}
	if err := c.cfg.codec.Unmarshal(result, &resp); err != nil {
		return resp, fmt.Errorf("decoding the result: %w", err)
	}
	return resp, nil
}

// checkContract compares the types of the endpoint function with the live
// servers' schemas, logging a drift once, and with WithStrictContract fails
// where it breaks. Classic servers publish none.
func (c *Client) checkContract(ctx context.Context, function string, req, resp reflect.Type, layout contract.Layout) error {
	if c.cfg.classic {
		return nil
	}
	published, err := c.engine.Published(ctx)
	if err != nil {
		return err
	}
	drift := c.contracts.Check(function, req, resp, layout, published)
	if c.cfg.strictContract && drift.Breaking {
		return &Error{Code: CodeInvalidArgument, Message: drift.Text}
	}
	return nil
}

// layouts are the argument styles as package contract knows them.
var layouts = [...]contract.Layout{argsOne: contract.One, argsNone: contract.None, argsNamed: contract.Named, argsSpread: contract.Spread}

// decodeResponse returns the return value of a raw response, or its failure
// as an *Error.
func decodeResponse(raw string) (json.RawMessage, error) {
	resp, err := wire.DecodeResponse(raw)
	switch {
	case err != nil:
		return nil, fmt.Errorf("response: %w", err)
	case resp.Failed():
		e := &Error{Code: Code(resp.Code), Message: resp.Message()}
		if resp.Details != nil {
			e.Details = json.RawMessage(resp.Details)
		}
		return nil, e
	case resp.ReturnValue == nil:
		return nil, fmt.Errorf("response: %w: neither return_value nor exception", wire.ErrMalformed)
	}
	return resp.ReturnValue, nil
}

// meta returns the metadata a call made with ctx sends.
func (c *Client) meta(ctx context.Context) map[string]string {
	out := OutgoingMeta(ctx)
	if !c.cfg.forward {
		return out
	}
	in := IncomingMeta(ctx)
	forwarded := 0
	for k := range in {
		if !traceContext[k] {
			forwarded++
		}
	}
	if forwarded == 0 {
		return out
	}
	m := make(map[string]string, forwarded+len(out))
	for k, v := range in {
		if !traceContext[k] {
			m[k] = v
		}
	}
	for k, v := range out {
		m[k] = v
	}
	return m
}

// traceContext is the metadata a tracer sets for each hop (W3C Trace
// Context): forwarded, it would make the next span a child of the caller's
// span, not of the hop's own.
var traceContext = map[string]bool{"traceparent": true, "tracestate": true}

func mustQueue(rc rueidis.Client, q string) {
	if rc == nil {
		panic("redisrpc: nil rueidis.Client")
	}
	if q == "" {
		panic("redisrpc: empty queue name")
	}
}
