package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/internal/keys"
	"github.com/redisrpc/redisrpc/internal/wire"
)

// A call is sent again, with the same id and the next attempt number, where
// that cannot make its request run twice:
//
//   - it failed before reaching Redis: no live server (FailFast), or Redis
//     refused or could not take the push (an error reply, a failed dial);
//   - where every live server keeps answers (WithDedupe): after any failure
//     to push, once the request is found in no list of Redis (find: were it
//     there, the call waits for it again instead); after an answer that
//     asks to try again (CodeUnavailable), which servers do not keep; and
//     where the request and its response are in no list after Redis failed
//     (recover): a resend is answered from what the server kept, or runs
//     the request for the first time.
//
// Each is made after a back-off with jitter, within the caller's deadline,
// at most Retries times (resends of lost responses, at most maxResends),
// and each takes a token of the client's budget.

// Back-off between sends: each doubles, from retryBase to retryCap, and
// waits between half and all of it ("equal jitter"), so that five retries
// span more than three seconds.
const (
	retryBase  = 200 * time.Millisecond
	retryCap   = 5 * time.Second
	maxResends = 3
)

// sendError is the cause of a call whose request could not be pushed.
type sendError struct{ err error }

func (e *sendError) Error() string { return "sending the request: " + e.err.Error() }
func (e *sendError) Unwrap() error { return e.err }

// notSent reports whether err, a push's failure, proves Redis did not take
// the push: Redis refused it, or no connection could be made.
func notSent(err error) bool {
	if _, ok := rueidis.IsRedisErr(err); ok {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// sends is the state of one call's sends.
type sends struct {
	c       *Client
	ctx     context.Context
	req     *wire.Request
	n       int // sends made
	retries int // of them, after failures
	resends int // of them, after lost responses
	checks  int // asks whether Redis holds a request whose push failed
}

// send sends the call once, or waits again for the last send.
func (s *sends) send(p *call, resend bool) (string, error, bool) {
	if resend {
		s.n++
		s.req.Attempt = s.n
		s.req.Sent = time.Now().UnixMilli()
	}
	return s.c.once(s.ctx, s.req, p, resend)
}

// next decides what follows a send that returned raw, err and lost: again
// reports whether the call goes on, after the back-off it waited, and
// resend whether it sends again rather than waits again for the last send;
// where it does not go on, err is the call's error.
func (s *sends) next(p *call, raw string, err error, lost bool) (again, resend bool, rerr error) {
	c := s.c
	v := c.view.Load()
	switch {
	case lost:
		lostErr := c.cfg.Transport(errors.New("the response was lost in a failure of Redis: the request may have run"))
		if !v.dedupe || s.resends == maxResends {
			return false, false, lostErr
		}
		s.resends++
		if !s.wait(s.resends) {
			return false, false, lostErr
		}
		return true, true, nil
	case err == nil:
		if c.cfg.Retries == 0 || !v.dedupe || !unavailable(raw) {
			c.budget.succeeded()
			return false, false, nil
		}
	case errors.Is(err, c.cfg.Unavailable):
	default:
		var se *sendError
		if c.cfg.Retries == 0 || !errors.As(err, &se) {
			return false, false, err
		}
		if !notSent(se.err) {
			if !v.dedupe {
				return false, false, err // it may be in the queue
			}
			// It may be in the queue, or taken: wait for it there, or send
			// it again where it is in no list; ask again while Redis cannot
			// say, as a copy sent meanwhile could run beside it.
			for {
				// Pending while Redis is asked, so that an answer that comes
				// meanwhile is not dropped; once wait reads it.
				if err := c.register(s.req.ID, p); err != nil {
					return false, false, err
				}
				in, ferr := c.find(s.ctx, p)
				if ferr == nil && in {
					p.sent.Store(true)
					return true, false, nil
				}
				if !c.unregister(s.req.ID, p) {
					return true, false, nil // answered meanwhile: the result waits on p.ch
				}
				if ferr == nil {
					break
				}
				// Asking is no send: it is bounded by the deadline and
				// the budget, not by Retries.
				s.checks++
				if !s.wait(s.checks) {
					return false, false, err
				}
			}
		}
	}
	if s.retries == c.cfg.Retries {
		return false, false, err
	}
	s.retries++
	return s.wait(s.retries), true, err
}

// wait waits for the k-th back-off (from 1) and a token of the budget, and
// reports false where the caller's deadline would pass first.
func (s *sends) wait(k int) bool {
	d := min(retryBase<<min(k-1, 10), retryCap)
	d = d/2 + rand.N(d/2+1)
	if dl, ok := s.ctx.Deadline(); ok && time.Until(dl) < d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.ctx.Done():
		return false
	case <-s.c.ctx.Done():
		return false
	}
	return s.c.budget.take(s.ctx, s.c.ctx) == nil
}

// unavailable reports whether raw is an answer that asks to try again.
func unavailable(raw string) bool {
	if !strings.Contains(raw, `"unavailable"`) {
		return false
	}
	r, err := wire.DecodeResponse(raw)
	return err == nil && r.Failed() && r.Code == wire.CodeUnavailable
}

// budget bounds the sends a client makes again, whatever its load, so that
// an outage does not multiply the load on Redis (after gRPC's retry
// throttling): each takes a token; the bucket holds budgetCap and gains
// budgetRate a second and one for each call that succeeds. A send that
// finds it empty waits for a token, within its caller's deadline, rather
// than fail a call that the end of the outage would answer.
type budget struct {
	mu     sync.Mutex
	spent  float64 // tokens taken and not yet regained
	last   time.Time
	active atomic.Bool // spent > 0, read without mu on the way of calls
}

const (
	budgetCap  = 20
	budgetRate = 10 // tokens a second
)

// refill regains what time has given since last. b.mu must be held.
func (b *budget) refill(now time.Time) {
	if !b.last.IsZero() {
		b.spent = max(b.spent-now.Sub(b.last).Seconds()*budgetRate, 0)
	}
	b.last = now
	b.active.Store(b.spent > 0)
}

// take takes a token, waiting for one while both contexts last.
func (b *budget) take(ctx, closing context.Context) error {
	for {
		b.mu.Lock()
		b.refill(time.Now())
		if b.spent+1 <= budgetCap {
			b.spent++
			b.active.Store(true)
			b.mu.Unlock()
			return nil
		}
		wait := time.Duration((b.spent + 1 - budgetCap) / budgetRate * float64(time.Second))
		b.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-closing.Done():
			t.Stop()
			return closing.Err()
		}
	}
}

// succeeded regains a token for a call that succeeded.
func (b *budget) succeeded() {
	if !b.active.Load() {
		return
	}
	b.mu.Lock()
	b.refill(time.Now())
	b.spent = max(b.spent-1, 0)
	b.active.Store(b.spent > 0)
	b.mu.Unlock()
}

// findScript reports which of the requests ARGV[2...], sent to the list
// KEYS[1], are in no list of Redis where a server may take or hold them:
// the list itself, or the processing list of a server in its lease set
// KEYS[2] (whose names start with ARGV[1]). It returns their indexes, from 1.
var findScript = rueidis.NewLuaScript(`
local want = {}
for i = 2, #ARGV do want[ARGV[i]] = i - 1 end
local found = {}
local function scan(key)
  local n = redis.call('LLEN', key)
  for start = 0, n - 1, 1000 do
    for _, e in ipairs(redis.call('LRANGE', key, start, start + 999)) do
      local i = want[e]
      if i then found[i] = true end
    end
  end
end
scan(KEYS[1])
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do scan(ARGV[1] .. id) end
local out = {}
for i = 1, #ARGV - 1 do
  if not found[i] then table.insert(out, i) end
end
return out`)

// missing returns which of bodies, sent to list, are in no list of Redis
// (findScript).
func (c *Client) missing(ctx context.Context, list string, bodies []string) (map[int]bool, error) {
	args := append([]string{keys.Tag(list) + ":processing:"}, bodies...)
	idx, err := findScript.Exec(ctx, c.rc, []string{list, keys.Leases(list)}, args).AsIntSlice()
	if err != nil {
		return nil, err
	}
	out := make(map[int]bool, len(idx))
	for _, i := range idx {
		out[int(i)-1] = true
	}
	return out, nil
}

// find reports whether the request p last sent is in a list of Redis.
func (c *Client) find(ctx context.Context, p *call) (bool, error) {
	fctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	m, err := c.missing(fctx, p.list, []string{p.body})
	if err != nil {
		return false, err
	}
	return !m[0], nil
}

// startRecovery starts a pass of recover, unless one runs, once receiving
// works again after it failed.
func (c *Client) startRecovery() {
	if !c.recovering.CompareAndSwap(false, true) {
		return
	}
	c.suspect.Store(false)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		c.recovering.Store(false)
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer c.recovering.Store(false)
		if err := c.recover(); err != nil && c.ctx.Err() == nil {
			c.suspect.Store(true) // the next pop that works tries again
			c.cfg.Logger.Warn("redisrpc: looking for the calls whose responses a failure of Redis lost", "queue", c.cfg.Queue, "err", err)
		}
	}()
}

// recover finds the pending calls whose requests Redis took, and that are
// in no list of Redis, neither as requests nor, once the receivers had
// their chance, as responses: their responses were lost in a failure of
// Redis (a pop's reply that never arrived), or Redis lost the requests. It
// ends their waits with lost, so that each sends its request again, to be
// answered from what the server kept or run for the first time. It does
// nothing unless every live server keeps answers: at most once a server
// holds what it runs in no list, and without kept answers a resend could
// run a request again.
func (c *Client) recover() error {
	if !c.view.Load().dedupe {
		return nil // at most once, or without kept answers, nothing can be sent again
	}
	type sentCall struct {
		id   string
		p    *call
		body string
	}
	byList := map[string][]sentCall{}
	c.mu.Lock()
	for id, p := range c.pending {
		if p.stream == nil && p.list != "" && p.sent != nil && p.sent.Load() { // streams are never sent again
			byList[p.list] = append(byList[p.list], sentCall{id, p, p.body})
		}
	}
	c.mu.Unlock()
	if len(byList) == 0 {
		return nil
	}
	// A response pushed just before the scan waits in the reply list: the
	// receivers take it within a pop; what is still pending after that and
	// the scan is lost.
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	var errs []error
	for list, sent := range byList {
		bodies := make([]string, len(sent))
		for i, s := range sent {
			bodies[i] = s.body
		}
		gone, err := c.missing(ctx, list, bodies)
		if err != nil {
			errs = append(errs, fmt.Errorf("reading %s: %w", list, err))
			continue
		}
		if len(gone) == 0 {
			continue
		}
		// Whatever was pushed to the reply list before the scan has been
		// taken by the receivers now, or is still there: look.
		replies, err := c.rc.Do(ctx, c.rc.B().Lrange().Key(c.replyKey).Start(0).Stop(-1).Build()).AsStrSlice()
		if err != nil {
			errs = append(errs, fmt.Errorf("reading %s: %w", c.replyKey, err))
			continue
		}
		waiting := map[string]bool{}
		for _, r := range replies {
			if id, err := wire.ResponseID(r); err == nil {
				waiting[id] = true
			}
		}
		c.mu.Lock()
		for i, s := range sent {
			if !gone[i] || waiting[s.id] || c.pending[s.id] != s.p || s.p.body != s.body {
				continue
			}
			delete(c.pending, s.id)
			s.p.ch <- result{lost: true}
		}
		c.mu.Unlock()
	}
	return errors.Join(errs...)
}
