package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redisrpc/redisrpc/internal/lists"
	"github.com/redisrpc/redisrpc/internal/wire"
)

// streamState is what the receivers keep of a pending stream: the beats
// they take, which never reach its channel.
type streamState struct {
	heard  atomic.Int64 // Unix ns of its last message
	beat   atomic.Int64 // its server's heartbeat, ms; 0 before the handler started
	lost   atomic.Bool  // a message did not fit its channel
	credit string       // where it grants
	read   atomic.Int64 // items read: granted again every registryRefresh, so that the server knows the caller is there
	// failure is the error that ended the stream where it did not fit.
	failure atomic.Pointer[error]
}

// Stream is the receiving side of one stream call (OpenStream). Its
// methods are for one goroutine.
type Stream struct {
	c        *Client
	p        *call
	id       string
	credit   string
	window   int64
	next     int64                        // seq of the next item
	stash    map[int64]wire.StreamMessage // arrived before their turn
	read     int64                        // items read
	granted  int64                        // items read when last granted
	deadline time.Time
	opened   time.Time
	start    time.Duration // how long the stream may take to start
	done     bool
}

// ErrSilent is the cause of a stream's failure when its server went silent:
// it stopped, or lost Redis.
var ErrSilent = errors.New("the server of the stream went silent")

// OpenStream sends req, whose ID comes from NewID, as a stream call with a
// window of that many unread items, and returns the stream to read. A
// stream that has not started within start (no server took it, or the one
// that did stopped) fails. Close it.
func (c *Client) OpenStream(ctx context.Context, req *wire.Request, window int, start time.Duration) (*Stream, error) {
	if c.cfg.Classic {
		return nil, c.cfg.NoID
	}
	if err := c.acquire(ctx); err != nil {
		return nil, err
	}
	v, err := c.current(ctx)
	if err != nil {
		c.release()
		return nil, err
	}
	req.Stream = window
	req.Sent = time.Now().UnixMilli()
	body, err := c.encode(req, v.maxRequest)
	if err != nil {
		c.release()
		return nil, err
	}
	// Room for every item the window allows, items sent again after a
	// failure of the server's push, and the end.
	p := &call{ch: make(chan result, 3*window+4), stream: &streamState{credit: wire.Credit(c.replyKey, req.ID)}}
	p.body, p.list = string(body), v.lists[0]
	if len(v.lists) > 1 {
		p.list = v.lists[int(c.nextList.Add(1))%len(v.lists)]
	}
	p.sent = new(atomic.Bool)
	if err := c.register(req.ID, p); err != nil {
		c.release()
		return nil, err
	}
	s := &Stream{c: c, p: p, id: req.ID, credit: p.stream.credit, window: int64(window), stash: map[int64]wire.StreamMessage{},
		opened: time.Now(), start: start}
	s.deadline, _ = ctx.Deadline()
	if !c.pusher.Push(lists.Item{Key: p.list, Value: p.body, ID: req.ID, Sent: p.sent}) {
		s.Close()
		return nil, c.cfg.Closed
	}
	return s, nil
}

// Next returns the next message of the stream: an item, or its end, which
// the stream's last call of Next returns. It fails with ctx's error, with
// an error wrapping ErrSilent when the server has sent nothing, not even a
// beat, for its heartbeat, and with cfg.Closed when the client closes.
func (s *Stream) Next(ctx context.Context) (wire.StreamMessage, error) {
	if s.done {
		return wire.StreamMessage{}, errors.New("the stream has ended")
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if m, ok := s.stash[s.next]; ok {
			delete(s.stash, s.next)
			return s.deliver(ctx, m)
		}
		if err := s.p.stream.failure.Load(); err != nil {
			return s.fail(*err)
		}
		if s.p.stream.lost.Load() {
			return s.fail(fmt.Errorf("%w: more items came than the window allows", wire.ErrMalformed))
		}
		// What has come is read first: a consumer slower than the heartbeat
		// finds it waiting.
		select {
		case r := <-s.p.ch:
			if m, done, err := s.take(ctx, r); done {
				return m, err
			}
			continue
		default:
		}
		var wait time.Duration
		if beat := time.Duration(s.p.stream.beat.Load()) * time.Millisecond; beat > 0 {
			wait = beat - time.Since(time.Unix(0, s.p.stream.heard.Load()))
			if wait <= 0 {
				return s.fail(s.c.cfg.Transport(fmt.Errorf("%w: nothing for %v, its heartbeat: it stopped, or lost Redis", ErrSilent, beat)))
			}
		} else {
			wait = s.start - time.Since(s.opened)
			if wait <= 0 {
				return s.fail(s.c.cfg.Transport(fmt.Errorf("the stream did not start within %v: no server took it, or the one that did stopped", s.start)))
			}
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case r := <-s.p.ch:
			if m, done, err := s.take(ctx, r); done {
				return m, err
			}
		case <-timer.C:
		case <-ctx.Done():
			return wire.StreamMessage{}, ctx.Err()
		}
	}
}

// take reads r, a message of the stream, and reports whether Next returns
// with what it returns: the next item, the end, or a failure.
func (s *Stream) take(ctx context.Context, r result) (wire.StreamMessage, bool, error) {
	if r.err != nil {
		m, err := s.fail(r.err)
		return m, true, err
	}
	m, err := wire.DecodeStream(r.raw)
	if err != nil {
		m, err := s.fail(fmt.Errorf("stream: %w", err))
		return m, true, err
	}
	switch {
	case m.Kind == wire.KindBeat:
	case m.Kind == wire.KindEnd && (!m.End.End || m.End.Failed() && m.Seq < s.next):
		// A failure before the stream started, or one whose items were not
		// all pushed: it ends the stream as it is.
		m, err := s.deliver(ctx, m)
		return m, true, err
	case m.Seq < s.next && m.Kind == wire.KindItem: // pushed again: read already
	case m.Seq == s.next:
		m, err := s.deliver(ctx, m)
		return m, true, err
	default:
		s.stash[m.Seq] = m
	}
	return wire.StreamMessage{}, false, nil
}

// deliver returns m, the next message, granting the server more items
// once a quarter of the window has been read.
func (s *Stream) deliver(ctx context.Context, m wire.StreamMessage) (wire.StreamMessage, error) {
	if m.Kind == wire.KindEnd {
		s.done = true
		s.c.unregister(s.id, s.p)
		s.release()
		return m, nil
	}
	s.next++
	s.read++
	s.p.stream.read.Store(s.read)
	if s.read-s.granted >= max(s.window/4, 1) {
		if err := s.grant(ctx); err != nil {
			return s.fail(s.c.cfg.Transport(fmt.Errorf("granting items: %w", err)))
		}
	}
	return m, nil
}

// grant tells the server how many items have been read: it may send that
// many more than the window.
func (s *Stream) grant(ctx context.Context) error {
	err := s.c.sending(func() error {
		rc := s.c.rc
		return lists.Err(rc.DoMulti(ctx,
			rc.B().Rpush().Key(s.credit).Element(strconv.FormatInt(s.read, 10)).Build(),
			rc.B().Pexpire().Key(s.credit).Milliseconds(s.ttl().Milliseconds()).Build()))
	})
	if err == nil {
		s.granted = s.read
	}
	return err
}

// ttl is how long the credit key lives: to the call's deadline, or a minute
// from each grant.
func (s *Stream) ttl() time.Duration {
	if !s.deadline.IsZero() {
		return max(time.Until(s.deadline)+time.Second, time.Second)
	}
	return time.Minute
}

// fail ends the stream with err.
func (s *Stream) fail(err error) (wire.StreamMessage, error) {
	s.Close()
	return wire.StreamMessage{}, err
}

// Close ends the stream: where it has not ended, it tells the server to
// stop (its handler's context ends within 100 ms) and drops what comes
// after. It is safe to call more than once.
func (s *Stream) Close() {
	if s.done {
		return
	}
	s.done = true
	s.c.unregister(s.id, s.p)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.c.sending(func() error {
		rc := s.c.rc
		return lists.Err(rc.DoMulti(ctx,
			rc.B().Rpush().Key(s.credit).Element(wire.Cancel).Build(),
			rc.B().Pexpire().Key(s.credit).Milliseconds(time.Minute.Milliseconds()).Build()))
	})
	s.release()
}

// release gives back the stream's slot, once.
func (s *Stream) release() {
	if s.p != nil {
		s.p = nil
		s.c.release()
	}
}
