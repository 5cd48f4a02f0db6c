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
//	 "id": "1f", "deadline": 1764050000000, "meta": {"traceparent": "..."}}
//
// A server pops it, runs the handler and appends the response to the response queue,
// which it gives an expiry (WithResponseTTL):
//
//	{"return_value": 5, "id": "1f"}
//	{"exception": "division by zero", "code": "invalid_argument", "id": "1f"}
//
// id, deadline, meta and code are optional; classic peers ignore them. A server
// writes only to lists inside "<queue>:rpc:" and logs and drops requests naming
// any other key. The full contract is the project's shared/PROTOCOL.md.
//
// Arguments map onto the request type Req like this: no arguments give the zero
// Req; one positional argument is decoded into Req; named arguments (kwargs) are
// decoded into Req as an object; several positional arguments are decoded into Req
// as an array. A Client sends Req as one positional argument, or as none when Req
// is an empty struct; see WithNamedArgs and WithPositionalArgs for the other forms.
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
// mode. A Client delivers one response to a call and drops any other for it;
// requests found past their deadline are dropped, not re-run. Classic clients
// get the same guarantee, which lives in the server.
//
// Stopping: requests a stopping server has taken but not started go back to
// the head of the queue in both modes, never run and never failed. Handlers
// cut off by a hard stop (Serve's context ending, or Shutdown's) that fail
// answer CodeUnavailable at most once; at least once their requests go back
// to the queue. A handler that calls runtime.Goexit answers CodeInternal.
//
// Keys: the queue; <tag>:leases, a sorted set of its servers (both modes);
// at least once <tag>:processing:<server>; at most once, while a server
// stops, <tag>:wake:<server>.<n> (with a TTL). <tag> is the queue where it has
// a hash tag ("{calc}" or "orders:{eu}"), else {queue}, so that every key of a
// queue shares its hash slot on Redis Cluster, whatever braces its name holds.
// Response lists expire (WithResponseTTL). docs/protocol.md lists them all.
//
// # Timeouts and failures
//
// The caller's context deadline travels with the request, as Unix
// milliseconds (deadlines past 2^53-1 ms, in the year 287396, are sent as
// that). A server answers CodeInvalidArgument to a deadline that is not a
// number from 1 to 2^53-1, does not start a request whose deadline has
// passed, and ends the handler's context at the deadline. Call returns when
// its context ends, with an error that matches ctx.Err() under errors.Is.
// Calls without a deadline wait until the response comes, so give every call
// a deadline. A failure reported by the remote side is an *Error with a Code;
// Redis failures are returned wrapped, never retried.
package redisrpc

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/internal/keys"
	"github.com/redisrpc/redisrpc/internal/lists"
	"github.com/redisrpc/redisrpc/internal/wire"
)

// Code classifies a failure. The protocol defines the constants below; a handler
// may use a word of its own.
type Code string

// The codes of the protocol.
const (
	CodeInvalidArgument  Code = "invalid_argument"  // arguments do not fit the function
	CodeNotFound         Code = "not_found"         // no such function
	CodeDeadlineExceeded Code = "deadline_exceeded" // the deadline passed
	CodeInternal         Code = "internal"          // the handler panicked or its result did not encode
	CodeUnavailable      Code = "unavailable"       // the service cannot serve now
)

// Error is a failure reported by the remote side of a call, or returned by a
// handler to choose the code its caller sees. Code is empty when the server sent
// none, as classic servers do.
type Error struct {
	Code    Code
	Message string
}

// NewError returns an *Error with the given code and message.
func NewError(code Code, message string) *Error { return &Error{Code: code, Message: message} }

// Error returns "code: message", or the message alone when there is no code.
func (e *Error) Error() string {
	if e.Code == "" {
		return e.Message
	}
	return string(e.Code) + ": " + e.Message
}

// Is reports whether an error with CodeDeadlineExceeded is matched against
// context.DeadlineExceeded, so that a server's verdict and the caller's own
// timeout are tested the same way.
func (e *Error) Is(target error) bool {
	return target == context.DeadlineExceeded && e.Code == CodeDeadlineExceeded
}

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

var (
	// ErrServerClosed is returned by Mux.Serve after Shutdown.
	ErrServerClosed = errors.New("redisrpc: server closed")
	// ErrClientClosed is returned by calls on a closed Client.
	ErrClientClosed = errors.New("redisrpc: client closed")
	// ErrClassicServer is returned by calls whose response came without an id, as
	// classic servers send them; such servers need a Client made WithClassicServer.
	ErrClassicServer = errors.New("redisrpc: response without id: the server looks classic; use WithClassicServer")
)

// Option configures a Mux or a Client. Each option says which it applies to;
// the other ignores it.
type Option func(*options)

type options struct {
	logger      *slog.Logger
	concurrency int
	responseTTL time.Duration
	classic     bool
	atLeastOnce bool
	heartbeat   time.Duration
	maxMessage  int
	shards      int
}

func newOptions(opts []Option) options {
	o := options{logger: slog.Default(), concurrency: 64, responseTTL: time.Minute,
		heartbeat: 10 * time.Second, maxMessage: 1 << 20, shards: 1}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithLogger sets where a Mux or Client logs dropped messages and Redis
// failures. The default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithConcurrency bounds how many handlers a Mux runs at once. The default is 64;
// values below 1 mean 1.
func WithConcurrency(n int) Option {
	return func(o *options) { o.concurrency = max(n, 1) }
}

// WithResponseTTL sets the expiry a Mux gives a response list each time it
// pushes a response, so that responses nobody collects do not stay in Redis. It
// is rounded up to whole seconds. The default is one minute.
func WithResponseTTL(d time.Duration) Option {
	return func(o *options) { o.responseTTL = max(d, time.Second) }
}

// WithAtLeastOnce makes a Mux deliver each request at least once: it moves the
// requests it takes into a processing list of its own, atomically, and removes
// each only after its response is pushed; when a server stops beating (see
// WithHeartbeat), live servers put its requests back at the head of the queue.
// A request may then run more than once, so handlers must be idempotent. The
// default is at most once.
func WithAtLeastOnce() Option {
	return func(o *options) { o.atLeastOnce = true }
}

// WithHeartbeat sets how long a Mux in at-least-once mode may go silent before
// other servers give its requests back to the queue. It beats every third of
// that. The default is 10 seconds; values below 300ms mean 300ms.
func WithHeartbeat(d time.Duration) Option {
	return func(o *options) { o.heartbeat = max(d, 300*time.Millisecond) }
}

// WithMaxMessageSize bounds the requests a Mux decodes, in bytes; larger ones
// are answered with CodeInvalidArgument without being decoded or copied. The
// default is 1 MiB.
func WithMaxMessageSize(n int) Option {
	return func(o *options) { o.maxMessage = max(n, 64) }
}

// WithShards spreads a service over n request lists on different hash slots,
// and so, on Redis Cluster, over different masters: the queue itself and n-1
// lists named after it. A Client sends each call to the next list in turn; a Mux
// keeps a pop waiting on each and takes from each at most an equal share of its
// free handler slots. Requests are taken in order within a list, not across
// lists. Give a service's clients and servers the same n; classic clients use
// the queue itself, which every Mux serves. The default is 1.
func WithShards(n int) Option {
	return func(o *options) { o.shards = max(n, 1) }
}

// WithClassicServer makes a Client wait for each response on a list of its own,
// as classic clients do, because classic servers do not echo ids. Such calls
// work with every server but each one holds a Redis connection while it waits.
func WithClassicServer() Option {
	return func(o *options) { o.classic = true }
}

// pollInterval bounds the receivers' pops, so that they end when no call is
// pending.
const pollInterval = time.Second

// poppers is the number of pops a Client keeps waiting on its response list.
const poppers = 2

// maxBatch caps the responses a Client takes in one pop.
const maxBatch = 256

// Client calls the functions served on one request queue. It is safe for
// concurrent use. Its zero value is not usable; make one with NewClient.
type Client struct {
	rc       rueidis.Client
	queue    string
	lists    []string // request lists: the queue and its shards
	replyKey string   // shared response list
	opts     options
	popper   *lists.Popper
	pusher   *lists.Pusher
	nextID   atomic.Uint64
	nextList atomic.Uint32

	mu        sync.Mutex
	pending   map[string]chan result
	receiving int // receive goroutines running, at most poppers
	closed    bool
	stop      context.CancelFunc
	ctx       context.Context
	wg        sync.WaitGroup
}

// result is a raw response, decoded by the calling goroutine, or an error.
type result struct {
	raw string
	err error
}

// NewClient returns a Client for the service whose request queue is queue. It
// uses rc and never closes it. It panics if rc is nil or queue is empty.
func NewClient(rc rueidis.Client, queue string, opts ...Option) *Client {
	mustQueue(rc, queue)
	ctx, stop := context.WithCancel(context.Background())
	o := newOptions(opts)
	c := &Client{
		rc:       rc,
		queue:    queue,
		lists:    keys.Shards(queue, o.shards),
		replyKey: wire.ResponsePrefix(queue) + randomName(20),
		opts:     o,
		popper:   lists.NewPopper(rc),
		pending:  make(map[string]chan result),
		ctx:      ctx,
		stop:     stop,
	}
	// Callers must never wait on Redis past their context: a goroutine sends.
	c.pusher = lists.NewPusher(rc, lists.PusherConfig{OnError: c.pushFailed})
	return c
}

// pushFailed ends the calls whose requests could not be sent.
func (c *Client) pushFailed(failed []lists.Item, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, it := range failed {
		if ch, ok := c.pending[it.ID]; ok {
			delete(c.pending, it.ID)
			ch <- result{err: fmt.Errorf("sending the request: %w", err)}
		}
	}
}

// Close stops the client: calls in flight and later calls fail with
// ErrClientClosed, and requests not yet sent are not sent. It waits for the
// client's goroutines (its two receivers and its request sender) to end, so
// that nothing reaches Redis from c after it returns, and does not close the
// rueidis client. It is safe to call more than once.
func (c *Client) Close() error {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		c.stop()
		c.failAll(ErrClientClosed)
	}
	c.mu.Unlock()
	c.pusher.Stop()
	c.wg.Wait()
	return nil
}

// Call calls endpoint e on the service of c with req and returns its result. It
// returns when the response arrives or ctx ends, whichever is first; ctx's
// deadline travels with the request.
//
// Errors: an *Error when the server reported a failure (use errors.As or
// CodeOf); an error matching ctx.Err() when ctx ended first; ErrClientClosed,
// ErrClassicServer, or a wrapped Redis error otherwise.
func Call[Req, Resp any](ctx context.Context, c *Client, e Endpoint[Req, Resp], req Req) (Resp, error) {
	var resp Resp
	fc, err := e.encode(req)
	if err != nil {
		return resp, err
	}
	raw, err := c.call(ctx, fc)
	if err != nil {
		return resp, fmt.Errorf("redisrpc: %s: %w", e.name, err)
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		return resp, fmt.Errorf("redisrpc: %s: decoding the result: %w", e.name, err)
	}
	return resp, nil
}

// call sends fc and returns the raw return value.
func (c *Client) call(ctx context.Context, fc wire.FunctionCall) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	req := wire.Request{FunctionCall: fc, Meta: metaToSend(ctx)}
	if dl, ok := ctx.Deadline(); ok {
		req.Deadline = wire.Deadline(dl)
	}
	if c.opts.classic {
		return c.callClassic(ctx, req)
	}
	req.ResponseQueue = c.replyKey
	req.ID = strconv.FormatUint(c.nextID.Add(1), 36)
	body := wire.AppendRequest(make([]byte, 0, 96+len(c.replyKey)+len(fc.Name)+len(fc.Args)+len(fc.Kwargs)), &req)
	ch := make(chan result, 1)
	if err := c.register(req.ID, ch); err != nil {
		return nil, err
	}
	// Requests queued by concurrent calls travel together in one RPUSH.
	list := c.lists[0]
	if len(c.lists) > 1 {
		list = c.lists[int(c.nextList.Add(1))%len(c.lists)]
	}
	if !c.pusher.Push(lists.Item{Key: list, Value: rueidis.BinaryString(body), ID: req.ID}) {
		c.unregister(req.ID) // Close came between register and Push
		return nil, ErrClientClosed
	}
	select {
	case r := <-ch:
		return outcome(r)
	case <-ctx.Done():
		c.unregister(req.ID)
		return nil, ctx.Err()
	}
}

// callClassic waits for the response on a list of the call's own, with no id.
func (c *Client) callClassic(ctx context.Context, req wire.Request) (json.RawMessage, error) {
	req.ResponseQueue = wire.ResponsePrefix(c.queue) + randomName(8)
	body := wire.AppendRequest(nil, &req)
	if err := c.rc.Do(ctx, c.rc.B().Rpush().Key(c.queue).Element(rueidis.BinaryString(body)).Build()).Error(); err != nil {
		return nil, fmt.Errorf("sending the request: %w", err)
	}
	wait := 0.0 // BLPOP's "for ever"; ctx still bounds it
	if dl, ok := ctx.Deadline(); ok {
		wait = max(time.Until(dl).Seconds(), 0.001)
	}
	kv, err := c.rc.Do(ctx, c.rc.B().Blpop().Key(req.ResponseQueue).Timeout(wait).Build()).AsStrSlice()
	switch {
	case rueidis.IsRedisNil(err) || ctx.Err() != nil:
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, context.DeadlineExceeded
	case err != nil:
		return nil, fmt.Errorf("waiting for the response: %w", err)
	case len(kv) != 2:
		return nil, fmt.Errorf("waiting for the response: unexpected BLPOP reply %q", kv)
	}
	return outcome(result{raw: kv[1]})
}

func outcome(r result) (json.RawMessage, error) {
	if r.err != nil {
		return nil, r.err
	}
	resp, err := wire.DecodeResponse(r.raw)
	switch {
	case err != nil:
		return nil, fmt.Errorf("response: %w", err)
	case resp.Failed():
		return nil, &Error{Code: Code(resp.Code), Message: resp.Message()}
	case resp.ReturnValue == nil:
		return nil, fmt.Errorf("response: %w: neither return_value nor exception", wire.ErrMalformed)
	}
	return resp.ReturnValue, nil
}

// register records a pending call and makes sure a receiver runs.
func (c *Client) register(id string, ch chan result) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClientClosed
	}
	c.pending[id] = ch
	for c.receiving < poppers {
		c.receiving++
		c.wg.Add(1)
		go c.receive()
	}
	return nil
}

func (c *Client) unregister(id string) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// failAll ends every pending call with err. c.mu must be held.
func (c *Client) failAll(err error) {
	for id, ch := range c.pending {
		ch <- result{err: err}
		delete(c.pending, id)
	}
}

// receive pops responses from the shared list and hands them to their calls.
// It runs while calls come, and ends on Close or when a wait for responses
// timed out with no call pending.
func (c *Client) receive() {
	defer c.wg.Done()
	var claimed []chan result // the calls of msgs, by index; nil where none
	for {
		_, msgs, err := c.popper.Pop(c.ctx, []string{c.replyKey}, pollInterval, maxBatch)
		c.mu.Lock()
		if c.closed {
			c.receiving--
			c.mu.Unlock()
			return
		}
		if err != nil {
			// Calls cannot learn their outcome without this list: fail them now
			// rather than let them wait for a response that may never come.
			c.opts.logger.Error("redisrpc: receiving responses", "queue", c.replyKey, "err", err)
			c.failAll(fmt.Errorf("receiving the response: %w", err))
		}
		claimed = claimed[:0]
		for _, msg := range msgs {
			claimed = append(claimed, c.claim(msg))
		}
		if len(msgs) == 0 && len(c.pending) == 0 {
			c.receiving--
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		// Waking the callers outside c.mu keeps new calls from waiting on it.
		for i, ch := range claimed {
			if ch != nil {
				ch <- result{raw: msgs[i]}
			}
		}
		clear(claimed) // hold no finished call's channel while waiting
		if len(msgs) > 0 {
			// Let the callers just woken run before this goroutine goes back to
			// Redis; the other receiver is waiting there already.
			runtime.Gosched()
		}
		if err != nil { // Redis is failing: do not spin while calls keep coming
			select {
			case <-time.After(50 * time.Millisecond):
			case <-c.ctx.Done():
			}
		}
	}
}

// claim takes the call msg answers off the pending ones and returns its
// channel, on which only the caller of claim may then send; nil if there is
// none. c.mu must be held.
func (c *Client) claim(msg string) chan result {
	id, err := wire.ResponseID(msg)
	if err != nil {
		c.opts.logger.Warn("redisrpc: dropped a malformed response", "queue", c.replyKey, "err", err, "message", clip(msg))
		return nil
	}
	if id == "" {
		c.opts.logger.Error("redisrpc: response without id; calling a classic server needs WithClassicServer", "queue", c.replyKey)
		c.failAll(ErrClassicServer)
		return nil
	}
	ch, ok := c.pending[id]
	if !ok {
		c.opts.logger.Debug("redisrpc: dropped a response nobody waits for", "queue", c.replyKey, "id", id)
		return nil
	}
	delete(c.pending, id)
	return ch
}

type metaKey struct{}

// ContextWithMeta returns a context whose calls send meta as the request's
// metadata (for example a W3C traceparent). It replaces metadata set before.
// Handlers read it with MetaFromContext; it is not forwarded further by itself.
func ContextWithMeta(ctx context.Context, meta map[string]string) context.Context {
	return context.WithValue(ctx, metaKey{}, meta)
}

func metaToSend(ctx context.Context) map[string]string {
	m, _ := ctx.Value(metaKey{}).(map[string]string)
	return m
}

func mustQueue(rc rueidis.Client, q string) {
	if rc == nil {
		panic("redisrpc: nil rueidis.Client")
	}
	if q == "" {
		panic("redisrpc: empty queue name")
	}
}

// randomName returns n characters of A-Z0-9, the alphabet of classic response queues.
func randomName(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	rand.Read(b) // never fails
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// clip shortens a message for a log line.
func clip(s string) string {
	const n = 200
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
