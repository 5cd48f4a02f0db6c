// Package lists pops and pushes batches of messages on Redis lists: pops use BLMPOP where the
// server has it and BLPOP followed by LPOP with a count where it does not.
package lists

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// Popper takes messages from the head of lists. It is safe for concurrent use.
type Popper struct {
	rc          rueidis.Client
	cancellable bool
	noLMPop     atomic.Bool // set once the server said it has no BLMPOP
}

// NewPopper returns a Popper that talks to rc. A cancellable one's pops end
// when their context does, deadline included, giving up what they took:
// for a client's responses, whose callers are gone by then, or whose
// connection is dead.
func NewPopper(rc rueidis.Client, cancellable bool) *Popper {
	return &Popper{rc: rc, cancellable: cancellable}
}

// abortable returns ctx, which still ends at its deadline, as a context
// without one, for a blocking command that ctx may cut short: rueidis then
// waits for its reply in the background, and when ctx ends first closes the
// command's connection in the calling goroutine. (Given a deadline, rueidis
// stops only at it; and it unblocks a command marked UnblockOnCancel with
// CLIENT UNBLOCK from a goroutine of its own, which can open a connection
// after the client's Close that nobody closes.)
func abortable(ctx context.Context) context.Context { return noDeadline{ctx} }

// Abortable is abortable, for blocking commands of other packages: a
// command given it must bound its own wait (BLPOP's timeout).
func Abortable(ctx context.Context) context.Context { return abortable(ctx) }

type noDeadline struct{ context.Context }

func (noDeadline) Deadline() (time.Time, bool) { return time.Time{}, false }

// Pop waits up to timeout for one of keys to hold messages and takes at most
// max from the first that does, returning its index in keys. It returns no
// messages and no error when the wait times out. The keys must share a hash
// slot. A cancelled ctx may lose messages Redis already popped, so callers
// that must not lose any leave ctx alone and rely on timeout to come back.
func (p *Popper) Pop(ctx context.Context, keys []string, timeout time.Duration, max int) (int, []string, error) {
	i, msgs, _, err := p.PopAfter(ctx, nil, keys, timeout, max)
	return i, msgs, err
}

// PopAfter is Pop, sending before ahead of the pop in the same write, on the
// pop's connection, and returning their results: for messages that ride
// with a pop (a request with the pop that waits for its response, a
// response with the pop that takes the next request). Their results come
// when the pop's does; with the pop's error, before's results carry it too.
func (p *Popper) PopAfter(ctx context.Context, before rueidis.Commands, keys []string, timeout time.Duration, max int) (int, []string, []rueidis.RedisResult, error) {
	secs := timeout.Seconds()
	blocking := ctx
	if p.cancellable {
		blocking = abortable(ctx)
	}
	n := len(before)
	do := func(pop rueidis.Completed) ([]rueidis.RedisResult, rueidis.RedisResult) {
		if n == 0 {
			return nil, p.rc.Do(blocking, pop)
		}
		rs := p.rc.DoMulti(blocking, append(before, pop)...)
		before = before[:n] // the pop is not the caller's
		return rs[:n], rs[n]
	}
	if !p.noLMPop.Load() {
		prs, r := do(p.rc.B().Blmpop().Timeout(secs).Numkeys(int64(len(keys))).Key(keys...).Left().Count(int64(max)).Build())
		kv, err := r.AsLMPop()
		switch {
		case err == nil:
			return index(keys, kv.Key), kv.Values, prs, nil
		case rueidis.IsRedisNil(err):
			return 0, nil, prs, nil
		case !isUnknownCommand(err):
			return 0, nil, prs, err
		}
		p.noLMPop.Store(true)
		if n > 0 { // before went out, and ran: only the pop is left
			return p.popBLPop(ctx, blocking, keys, secs, max, prs)
		}
	}
	prs, r := do(p.rc.B().Blpop().Key(keys...).Timeout(secs).Build())
	return p.finishBLPop(ctx, r, keys, max, prs)
}

// popBLPop pops with BLPOP, for servers without BLMPOP, after before ran.
func (p *Popper) popBLPop(ctx, blocking context.Context, keys []string, secs float64, max int, prs []rueidis.RedisResult) (int, []string, []rueidis.RedisResult, error) {
	r := p.rc.Do(blocking, p.rc.B().Blpop().Key(keys...).Timeout(secs).Build())
	return p.finishBLPop(ctx, r, keys, max, prs)
}

// finishBLPop reads BLPOP's reply r, and takes up to max-1 more messages from
// the list it popped with LPOP.
func (p *Popper) finishBLPop(ctx context.Context, r rueidis.RedisResult, keys []string, max int, prs []rueidis.RedisResult) (int, []string, []rueidis.RedisResult, error) {
	kv, err := r.AsStrSlice()
	if rueidis.IsRedisNil(err) {
		return 0, nil, prs, nil
	}
	if err != nil {
		return 0, nil, prs, err
	}
	if len(kv) != 2 {
		return 0, nil, prs, nil
	}
	i, msgs := index(keys, kv[0]), kv[1:]
	if max > 1 {
		more, err := p.rc.Do(ctx, p.rc.B().Lpop().Key(kv[0]).Count(int64(max-1)).Build()).AsStrSlice()
		if err != nil && !rueidis.IsRedisNil(err) {
			// The first message is already ours; hand it over and report nothing.
			return i, msgs, prs, nil
		}
		msgs = append(msgs, more...)
	}
	return i, msgs, prs, nil
}

func index(keys []string, key string) int {
	for i, k := range keys {
		if k == key {
			return i
		}
	}
	return 0
}

func isUnknownCommand(err error) bool {
	rerr, ok := rueidis.IsRedisErr(err)
	return ok && strings.Contains(strings.ToLower(rerr.Error()), "unknown command")
}
