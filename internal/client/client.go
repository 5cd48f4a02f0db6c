// Package client is the engine of a redisrpc Client: it sends requests,
// receives every response of the client on one shared list, and hands each
// to the call that waits for it.
package client

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/internal/contract"
	"github.com/redisrpc/redisrpc/internal/deadline"
	"github.com/redisrpc/redisrpc/internal/keys"
	"github.com/redisrpc/redisrpc/internal/lists"
	"github.com/redisrpc/redisrpc/internal/outage"
	"github.com/redisrpc/redisrpc/internal/registry"
	"github.com/redisrpc/redisrpc/internal/wire"
)

// Config configures a Client.
type Config struct {
	Queue      string
	Classic    bool // each call waits on a list of its own, with no id
	Logger     *slog.Logger
	MaxMessage int // the largest request sent, and response accepted, in bytes
	// Closed, NoID and TooLarge are the errors of calls on a closed client,
	// of calls answered without an id, and of messages over MaxMessage.
	Closed, NoID, TooLarge error
	// FailFast fails calls with Unavailable while the registry shows no live
	// server of the queue.
	FailFast    bool
	Unavailable error
	// MaxInFlight bounds the calls in flight; more wait for one to end.
	MaxInFlight int
	// Transport makes the error of a call that Redis failed, keeping err
	// for errors.Is and errors.As.
	Transport func(err error) error
	// Retries is how often a call is sent again after a failure that allows
	// it (see retry.go).
	Retries int
}

// registryRefresh is how often a client reads the registry.
const registryRefresh = 2 * time.Second

// view is what a client last read of its servers in the registry.
type view struct {
	read       bool                // the registry could be read
	live       int                 // live servers
	lists      []string            // request lists: the queue and its shards
	maxRequest int                 // the least of the servers' and the client's limits
	dedupe     bool                // every live server keeps answers (WithDedupe), and some is live
	published  *contract.Published // the live servers' schemas
}

const (
	// pollInterval bounds the receivers' pops, so that they end when no call
	// is pending.
	pollInterval = time.Second
	// poppers is the number of pops a Client keeps waiting on its list.
	poppers = 2
	// maxBatch caps the responses a Client takes in one pop.
	maxBatch = 256
)

// Client sends calls to one queue. It is safe for concurrent use.
type Client struct {
	rc        rueidis.Client
	cfg       Config
	view      atomic.Pointer[view]
	watching  sync.Once
	watched   chan struct{} // closed once the registry was first read, or not
	ready     atomic.Bool   // watched is closed: calls need not look at it
	replyKey  string        // shared response list
	popper    *lists.Popper
	pusher    *lists.Pusher
	nextID    atomic.Uint64
	nextList  atomic.Uint32
	disagreed atomic.Bool // the servers' shard counts differ, and it was logged

	// Calls in flight: counted without a lock; calls over MaxInFlight wait
	// on freed, which a call that ends closes while some wait.
	inFlight atomic.Int64
	waiting  atomic.Int64
	slotMu   sync.Mutex
	freed    chan struct{}

	recvLog *outage.Log  // failures to receive responses
	backoff atomic.Int64 // after a failure to receive, ns; client-wide

	budget     budget      // of the retries and resends (retry.go)
	suspect    atomic.Bool // receiving failed: responses may be lost
	recovering atomic.Bool // a recovery pass runs

	mu        sync.Mutex
	pending   map[string]*call
	receiving int // receive goroutines running, at most poppers
	closed    bool
	stop      context.CancelFunc
	ctx       context.Context
	wg        sync.WaitGroup
}

// result is a raw response, decoded by the calling goroutine, or an error;
// or, with lost, word that the request is in no list of Redis and its
// response in none either: lost in a failure of Redis (recover).
type result struct {
	raw  string
	err  error
	lost bool
}

// call is a pending call: its result comes on ch; a stream's every message
// but its beats.
type call struct {
	ch     chan result
	body   string       // the request as last sent
	list   string       // where it went
	sent   *atomic.Bool // Redis took it
	stream *streamState // of a stream call (OpenStream), else nil
}

// put sends r to p, which has room for it, unless p is a stream whose
// channel is full: never blocking, it then marks the stream failed.
func (p *call) put(r result) {
	if p.stream == nil {
		p.ch <- r
		return
	}
	select {
	case p.ch <- r:
	default:
		if r.err != nil {
			p.stream.failure.Store(&r.err)
		} else {
			p.stream.lost.Store(true)
		}
	}
}

// calls holds the calls that received their result, to be used again:
// nothing else sends on ch then, as a call's result is sent once, by
// whoever took the call off pending.
var calls = sync.Pool{New: func() any { return &call{ch: make(chan result, 1)} }}

// New returns a Client for cfg.
func New(rc rueidis.Client, cfg Config) *Client {
	ctx, stop := context.WithCancel(context.Background())
	c := &Client{
		rc:       rc,
		cfg:      cfg,
		watched:  make(chan struct{}),
		replyKey: keys.Reply(cfg.Queue, wire.RandomName(20)),
		popper:   lists.NewPopper(rc, true),
		pending:  make(map[string]*call),
		ctx:      ctx,
		stop:     stop,
	}
	// Until the registry shows live servers and their shard count, calls go
	// to the queue itself, which every server serves.
	c.view.Store(&view{lists: []string{cfg.Queue}, maxRequest: cfg.MaxMessage})
	c.recvLog = outage.New(cfg.Logger, "redisrpc: receiving responses", "queue", c.replyKey)
	// Callers must never wait on Redis past their context: a goroutine sends.
	c.pusher = lists.NewPusher(rc, lists.PusherConfig{OnError: c.pushFailed})
	return c
}

// pushFailed ends the calls whose requests could not be sent.
func (c *Client) pushFailed(failed []lists.Item, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, it := range failed {
		if p, ok := c.pending[it.ID]; ok && p.body == it.Value {
			delete(c.pending, it.ID)
			p.put(result{err: c.cfg.Transport(&sendError{err})})
		}
	}
}

// Close fails the calls in flight and later ones with cfg.Closed, forgets
// requests not yet sent, cancels the streams open, and waits for the
// client's goroutines to end.
func (c *Client) Close() {
	c.mu.Lock()
	var open []*streamState
	if !c.closed {
		c.closed = true
		c.stop()
		for _, p := range c.pending {
			if p.stream != nil {
				open = append(open, p.stream)
			}
		}
		c.failAll(c.cfg.Closed)
	}
	c.mu.Unlock()
	if len(open) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c.grantAll(ctx, open, true)
		cancel()
	}
	c.pusher.Stop()
	c.wg.Wait()
}

// NewID returns the id of a new call, or "" in classic mode, where calls
// have none.
func (c *Client) NewID() string {
	if c.cfg.Classic {
		return ""
	}
	return strconv.FormatUint(c.nextID.Add(1), 36)
}

// Call sends req, whose ID comes from NewID, and returns the raw response.
// It fills in the response queue and the time sent, and the attempt of each
// send: it sends req again after a failure that allows it (Retries; see
// retry), and where its response was lost. It returns ctx.Err() when ctx
// ends first. It calls attempted, if set, with the sends it made.
func (c *Client) Call(ctx context.Context, req *wire.Request, attempted *int) (string, error) {
	if err := c.acquire(ctx); err != nil {
		return "", err
	}
	defer c.release()
	if c.cfg.Classic { // sent once: classic servers keep no answers
		if attempted != nil {
			*attempted = 1
		}
		req.Sent = time.Now().UnixMilli()
		return c.callClassic(ctx, req, "", c.cfg.MaxMessage)
	}
	p := calls.Get().(*call)
	p.list = ""
	defer func() { // nothing sends on p.ch any more (wait)
		p.body, p.sent = "", nil
		calls.Put(p)
	}()
	s := sends{c: c, ctx: ctx, req: req}
	defer func() {
		if attempted != nil {
			*attempted = s.n
		}
	}()
	for resend := true; ; {
		raw, err, lost := s.send(p, resend)
		var again bool
		if again, resend, err = s.next(p, raw, err, lost); !again {
			return raw, err
		}
	}
}

// once sends req, unless resend is false, when it waits again for the
// response to what p last sent, p being pending or its result on p.ch, and
// returns the raw response, or reports that it was lost.
func (c *Client) once(ctx context.Context, req *wire.Request, p *call, resend bool) (raw string, err error, lost bool) {
	if !resend { // waiting again: the caller registered p (sends.next)
		return c.wait(ctx, req.ID, p)
	}
	v, err := c.current(ctx)
	if err != nil {
		return "", err, false
	}
	body, err := c.encode(req, v.maxRequest)
	if err != nil {
		return "", err, false
	}
	p.body = rueidis.BinaryString(body)
	// A request sent again goes to the list of its first send, whose
	// servers keep its answer.
	if p.list == "" {
		p.list = v.lists[0]
		if len(v.lists) > 1 {
			p.list = v.lists[int(c.nextList.Add(1))%len(v.lists)]
		}
	}
	p.sent = new(atomic.Bool) // of this send alone: the Pusher may hold the last
	if err := c.register(req.ID, p); err != nil {
		return "", err, false
	}
	// Requests queued by concurrent calls travel together in one RPUSH.
	if !c.pusher.Push(lists.Item{Key: p.list, Value: p.body, ID: req.ID, Sent: p.sent}) {
		if !c.unregister(req.ID, p) { // Close came between register and Push
			<-p.ch
		}
		return "", c.cfg.Closed, false
	}
	return c.wait(ctx, req.ID, p)
}

// acquire takes a slot for a call in flight, waiting for one while ctx lasts.
func (c *Client) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	limit := int64(max(c.cfg.MaxInFlight, 1))
	for {
		if c.inFlight.Add(1) <= limit {
			return nil
		}
		c.waiting.Add(1)
		c.slotMu.Lock()
		if c.freed == nil {
			c.freed = make(chan struct{})
		}
		freed := c.freed
		c.slotMu.Unlock()
		// A release after waiting counted this call closes freed; one before
		// shows in inFlight.
		if c.inFlight.Add(-1) < limit {
			c.waiting.Add(-1)
			continue
		}
		select {
		case <-freed:
			c.waiting.Add(-1)
		case <-ctx.Done():
			c.waiting.Add(-1)
			return ctx.Err()
		}
	}
}

// release gives back a call's slot, and wakes the calls waiting for one.
func (c *Client) release() {
	c.inFlight.Add(-1)
	if c.waiting.Load() > 0 {
		c.slotMu.Lock()
		if c.freed != nil {
			close(c.freed)
			c.freed = nil
		}
		c.slotMu.Unlock()
	}
}

// encode fills in the response queue and encodes req, if it is not over limit.
func (c *Client) encode(req *wire.Request, limit int) ([]byte, error) {
	req.ResponseQueue = c.replyKey
	body := wire.AppendRequest(make([]byte, 0, wire.RequestSize(req)), req)
	if len(body) > limit {
		return nil, fmt.Errorf("%w: a request of %d bytes, over the limit of %d", c.cfg.TooLarge, len(body), limit)
	}
	return body, nil
}

// wait waits for the response of the call id, p.
func (c *Client) wait(ctx context.Context, id string, p *call) (string, error, bool) {
	select {
	case r := <-p.ch:
		if r.err == nil && !r.lost {
			r.err = c.checkSize("response", len(r.raw))
		}
		return r.raw, r.err, r.lost
	case <-ctx.Done():
		if !c.unregister(id, p) {
			<-p.ch // its result came meanwhile: p.ch is empty again for reuse
		}
		return "", ctx.Err(), false
	}
}

// CallServer sends req to the inbox of one server of the queue, server,
// which alone answers it, and returns the raw response. The request expires
// from the inbox with ctx's deadline, or after a minute.
func (c *Client) CallServer(ctx context.Context, req *wire.Request, server string) (string, error) {
	if err := c.acquire(ctx); err != nil {
		return "", err
	}
	defer c.release()
	req.Sent = time.Now().UnixMilli()
	v, err := c.read(ctx)
	if err != nil {
		return "", err
	}
	if c.cfg.Classic {
		return c.callClassic(ctx, req, server, v.maxRequest)
	}
	body, err := c.encode(req, v.maxRequest)
	if err != nil {
		return "", err
	}
	p := calls.Get().(*call)
	defer calls.Put(p)
	p.body, p.list = "", "" // never sent again: at most once, to one server
	if err := c.register(req.ID, p); err != nil {
		return "", err
	}
	// Close ends the push, and waits for it.
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()
	if err := c.sending(func() error { return c.pushInbox(pctx, server, body) }); err != nil {
		if !c.unregister(req.ID, p) {
			<-p.ch
		}
		switch {
		case err == c.cfg.Closed || c.ctx.Err() != nil:
			return "", c.cfg.Closed
		case ctx.Err() != nil:
			return "", ctx.Err()
		}
		return "", c.cfg.Transport(fmt.Errorf("sending the request: %w", err))
	}
	raw, err, _ := c.wait(ctx, req.ID, p)
	return raw, err
}

// sending runs push, a send of the calling goroutine's own, unless the
// client is closed (cfg.Closed); Close waits for it, so that nothing reaches
// Redis from the client after Close returns.
func (c *Client) sending(push func() error) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.cfg.Closed
	}
	c.wg.Add(1)
	c.mu.Unlock()
	defer c.wg.Done()
	return push()
}

// pushInbox appends body to the inbox of server. The inbox is shared by every
// caller of the server: it expires with ctx's deadline, or after a minute,
// but its expiry is only ever extended, so that a short call does not expire
// longer ones.
func (c *Client) pushInbox(ctx context.Context, server string, body []byte) error {
	ttl := time.Minute
	if dl, ok := ctx.Deadline(); ok {
		ttl = max(time.Until(dl), time.Millisecond)
	}
	return lists.PushExtend(ctx, c.rc, keys.Inbox(c.cfg.Queue, server), ttl, rueidis.BinaryString(body))
}

// Live returns the ids of the queue's live servers, read from the registry now.
func (c *Client) Live(ctx context.Context) ([]string, error) {
	return registry.LiveIDs(ctx, c.rc, c.cfg.Queue)
}

// Published returns the schemas the live servers publish, as last read, after
// the first reading of the registry; nil before any reading succeeded.
func (c *Client) Published(ctx context.Context) (*contract.Published, error) {
	v, err := c.read(ctx)
	if err != nil {
		return nil, err
	}
	return v.published, nil
}

// current returns the client's view of its servers, as read does; and with
// FailFast, fails while it shows none.
func (c *Client) current(ctx context.Context) (*view, error) {
	v, err := c.read(ctx)
	if err != nil {
		return nil, err
	}
	if c.cfg.FailFast && v.read && v.live == 0 {
		return nil, c.cfg.Unavailable
	}
	return v, nil
}

// read returns the client's view of its servers, reading the registry first
// at the first call.
func (c *Client) read(ctx context.Context) (*view, error) {
	if !c.ready.Load() { // the first calls wait for the first reading
		c.watching.Do(c.watch)
		select {
		case <-c.watched:
			c.ready.Store(true)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return c.view.Load(), nil
}

// watch starts reading the registry every registryRefresh, until Close.
func (c *Client) watch() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		close(c.watched)
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTicker(registryRefresh)
		defer t.Stop()
		failing := false
		for first := true; ; first = false {
			failing = c.refresh(failing)
			c.keepStreams()
			if first {
				close(c.watched)
			}
			select {
			case <-t.C:
			case <-c.ctx.Done():
				return
			}
		}
	}()
}

// keepStreams grants again what each open stream has read, so that its
// server knows its caller is there however slowly it reads (the server
// gives up on a caller silent for server.CallerTimeout).
func (c *Client) keepStreams() {
	c.mu.Lock()
	var open []*streamState
	for _, p := range c.pending {
		if p.stream != nil {
			open = append(open, p.stream)
		}
	}
	c.mu.Unlock()
	if len(open) > 0 {
		ctx, cancel := context.WithTimeout(c.ctx, registryRefresh)
		defer cancel()
		c.grantAll(ctx, open, false)
	}
}

// grantAll pushes to the credit list of each stream what it has read, or
// with cancel, the end of it.
func (c *Client) grantAll(ctx context.Context, streams []*streamState, cancel bool) {
	cmds := make(rueidis.Commands, 0, 2*len(streams))
	for _, st := range streams {
		grant := strconv.FormatInt(st.read.Load(), 10)
		if cancel {
			grant = wire.Cancel
		}
		cmds = append(cmds, c.rc.B().Rpush().Key(st.credit).Element(grant).Build(),
			c.rc.B().Pexpire().Key(st.credit).Milliseconds(time.Minute.Milliseconds()).Build())
	}
	for _, r := range c.rc.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			c.cfg.Logger.Debug("redisrpc: granting the items of streams", "queue", c.replyKey, "err", err)
			return
		}
	}
}

// maxBeat bounds the heartbeat a server may say it has (its beats).
const maxBeat = 10 * time.Minute

// refresh reads the registry: how many servers are live, their shards and
// their message limit. It logs a failure to read when it starts and the
// recovery after; it reports whether reading failed.
func (c *Client) refresh(failing bool) bool {
	ctx, cancel := context.WithTimeout(c.ctx, registryRefresh)
	defer cancel()
	infos, err := registry.Live(ctx, c.rc, c.cfg.Queue)
	if err != nil {
		if !failing && c.ctx.Err() == nil {
			c.cfg.Logger.Warn("redisrpc: reading the registry; calls keep the shards and limits last read", "queue", c.cfg.Queue, "err", err)
		}
		return true
	}
	if failing {
		c.cfg.Logger.Info("redisrpc: reading the registry again", "queue", c.cfg.Queue)
	}
	old := c.view.Load()
	// Every server serves the queue itself; its shards depend on its count
	// (keys.Shards), so calls go to shards only where every live server
	// registered the same count, and to the queue while none is live.
	v := &view{read: true, live: len(infos), lists: []string{c.cfg.Queue}, maxRequest: c.cfg.MaxMessage, dedupe: len(infos) > 0,
		published: contract.Read(infos, old.published)}
	shards := map[int]bool{}
	unknown := false // a server has published no entry yet
	for _, info := range infos {
		if info.Shards > 0 {
			shards[info.Shards] = true
		} else {
			unknown = true
		}
		if info.MaxMessage > 0 {
			v.maxRequest = min(v.maxRequest, info.MaxMessage)
		}
		v.dedupe = v.dedupe && info.DedupeMS > 0 && info.Mode == "at-least-once"
	}
	switch {
	case unknown:
	case len(shards) > 1:
		if !c.disagreed.Swap(true) {
			c.cfg.Logger.Warn("redisrpc: the servers of the queue registered different shard counts; calls go to the queue itself, which all serve",
				"queue", c.cfg.Queue, "shards", slices.Sorted(maps.Keys(shards)))
		}
	case len(shards) == 1:
		c.disagreed.Store(false)
		for n := range shards {
			if n > 1 {
				v.lists = old.lists
				if n != len(old.lists) {
					v.lists = keys.Shards(c.cfg.Queue, n)
				}
			}
		}
	}
	c.view.Store(v)
	return false
}

// callClassic waits for the response on a list of the call's own, with no
// id: the request goes to the queue, or with server set, to that server's
// inbox. Close ends it with cfg.Closed.
func (c *Client) callClassic(ctx context.Context, req *wire.Request, server string, limit int) (string, error) {
	req.ResponseQueue = wire.ResponsePrefix(c.cfg.Queue) + wire.RandomName(8)
	body := wire.AppendRequest(make([]byte, 0, wire.RequestSize(req)), req)
	if len(body) > limit {
		return "", fmt.Errorf("%w: a request of %d bytes, over the limit of %d", c.cfg.TooLarge, len(body), limit)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(c.ctx, func() { cancel(c.cfg.Closed) })
	defer stop()
	err := c.sending(func() error {
		if server == "" {
			return c.rc.Do(ctx, c.rc.B().Rpush().Key(c.cfg.Queue).Element(rueidis.BinaryString(body)).Build()).Error()
		}
		return c.pushInbox(ctx, server, body)
	})
	switch {
	case err == c.cfg.Closed || c.ctx.Err() != nil:
		return "", c.cfg.Closed
	case ctx.Err() != nil:
		return "", context.Cause(ctx)
	case err != nil:
		return "", c.cfg.Transport(fmt.Errorf("sending the request: %w", err))
	}
	wait := 0.0 // BLPOP's "for ever"; ctx still bounds it
	if dl, ok := ctx.Deadline(); ok {
		wait = max(time.Until(dl).Seconds(), 0.001)
	}
	// Given a deadline, rueidis ends a blocking command only at it; without
	// one, it ends it when ctx does, cancelled or closed (lists.Abortable),
	// while BLPOP's own timeout ends it at the deadline.
	kv, err := c.rc.Do(lists.Abortable(ctx), c.rc.B().Blpop().Key(req.ResponseQueue).Timeout(wait).Build()).AsStrSlice()
	switch {
	case ctx.Err() != nil:
		return "", context.Cause(ctx)
	case rueidis.IsRedisNil(err):
		return "", context.DeadlineExceeded
	case err != nil:
		return "", c.cfg.Transport(fmt.Errorf("waiting for the response: %w", err))
	case len(kv) != 2:
		return "", fmt.Errorf("waiting for the response: unexpected BLPOP reply %q", kv)
	}
	return kv[1], c.checkSize("response", len(kv[1]))
}

// checkSize fails a message of n bytes over MaxMessage.
func (c *Client) checkSize(what string, n int) error {
	if n > c.cfg.MaxMessage {
		return fmt.Errorf("%w: a %s of %d bytes, over the limit of %d", c.cfg.TooLarge, what, n, c.cfg.MaxMessage)
	}
	return nil
}

// register records a pending call and makes sure a receiver runs.
func (c *Client) register(id string, p *call) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.cfg.Closed
	}
	c.pending[id] = p
	for c.receiving < poppers {
		c.receiving++
		c.wg.Add(1)
		go c.receive()
	}
	return nil
}

// unregister takes the call id, p, off the pending ones and reports true,
// or reports false where it is no longer pending: its result was sent.
func (c *Client) unregister(id string, p *call) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending[id] != p {
		return false
	}
	delete(c.pending, id)
	return true
}

// failAll ends every pending call with err. c.mu must be held.
func (c *Client) failAll(err error) {
	for id, p := range c.pending {
		p.put(result{err: err})
		delete(c.pending, id)
	}
}

// receive pops responses from the shared list and hands them to their calls.
// It runs while calls come, and ends on Close or when a wait for responses
// timed out with no call pending. When Redis fails, calls stay pending, to
// get their responses when it is back or their deadline errors, and the
// receivers back off together, logging the outage once (package outage).
func (c *Client) receive() {
	defer c.wg.Done()
	var claimed []*call // the calls of msgs, by index; nil where none
	// The deadline ends a pop on a connection that died silently, as over a
	// network partition; Close ends it at once.
	window := deadline.NewWindow(c.ctx, lists.MaxPopWait, time.Second)
	for {
		_, msgs, err := c.popper.Pop(window.Context(), []string{c.replyKey}, pollInterval, maxBatch)
		if err != nil && c.ctx.Err() == nil {
			c.recvLog.Fail(err)
			c.suspect.Store(true) // a pop's reply may have carried responses
		} else if err == nil {
			c.recvLog.OK()
			c.backoff.Store(0)
			if c.suspect.Load() {
				c.startRecovery()
			}
		}
		c.mu.Lock()
		if c.closed {
			c.receiving--
			c.mu.Unlock()
			return
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
		for i, p := range claimed {
			switch {
			case p == nil:
			default:
				p.put(result{raw: msgs[i]})
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
			case <-time.After(c.nextBackoff()):
			case <-c.ctx.Done():
			}
		}
	}
}

// nextBackoff doubles the client's back-off, from 50ms to at most
// maxBackoff, and returns it.
func (c *Client) nextBackoff() time.Duration {
	for {
		old := time.Duration(c.backoff.Load())
		next := min(max(2*old, 50*time.Millisecond), maxBackoff)
		if c.backoff.CompareAndSwap(int64(old), int64(next)) {
			return next
		}
	}
}

// maxBackoff bounds the waits after Redis failures, and so how long after
// Redis comes back a client or server notices.
const maxBackoff = 500 * time.Millisecond

// claim takes the call msg answers off the pending ones and returns it; only
// the caller of claim may then send on its channel; nil if there is none. A
// stream stays pending until its end, and its beats are taken here. c.mu
// must be held.
func (c *Client) claim(msg string) *call {
	id, err := wire.ResponseID(msg)
	if err != nil {
		c.cfg.Logger.Warn("redisrpc: dropped a malformed response", "queue", c.replyKey, "err", err, "message", wire.Clip(msg))
		return nil
	}
	if id == "" {
		c.cfg.Logger.Error("redisrpc: response without id; calling a classic server needs WithClassicServer", "queue", c.replyKey)
		c.failAll(c.cfg.NoID)
		return nil
	}
	p, ok := c.pending[id]
	if !ok {
		c.cfg.Logger.Debug("redisrpc: dropped a response nobody waits for", "queue", c.replyKey, "id", id)
		return nil
	}
	if p.stream != nil {
		// A stream stays pending until it has read its end: its items may
		// still be on their way from the other receiver.
		p.stream.heard.Store(time.Now().UnixNano())
		if wire.IsBeat(msg, id) {
			if b := wire.BeatOf(msg); b > 0 {
				p.stream.beat.Store(min(b, maxBeat.Milliseconds()))
			}
			return nil
		}
		return p
	}
	delete(c.pending, id)
	return p
}
