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
	_, i, msgs, err := p.PopAfter(ctx, nil, keys, timeout, max)
	return i, msgs, err
}

// PopAfter is Pop with the commands first written ahead of its pop, in the
// same write on the pop's connection, and run by Redis before it; it returns
// their replies too. Not on Redis Cluster, where first may name keys of
// other slots.
func (p *Popper) PopAfter(ctx context.Context, first rueidis.Commands, keys []string, timeout time.Duration, max int) (firstRes []rueidis.RedisResult, i int, msgs []string, err error) {
	secs := timeout.Seconds()
	blocking := ctx
	if p.cancellable {
		blocking = abortable(ctx)
	}
	// do runs pop after first, which then go no more.
	do := func(pop rueidis.Completed) rueidis.RedisResult {
		if len(first) == 0 {
			return p.rc.Do(blocking, pop)
		}
		res := p.rc.DoMulti(blocking, append(first[:len(first):len(first)], pop)...)
		firstRes, first = res[:len(first)], nil
		return res[len(res)-1]
	}
	if !p.noLMPop.Load() {
		kv, err := do(p.rc.B().Blmpop().Timeout(secs).Numkeys(int64(len(keys))).Key(keys...).Left().Count(int64(max)).Build()).AsLMPop()
		switch {
		case err == nil:
			return firstRes, index(keys, kv.Key), kv.Values, nil
		case rueidis.IsRedisNil(err):
			return firstRes, 0, nil, nil
		case !isUnknownCommand(err):
			return firstRes, 0, nil, err
		}
		p.noLMPop.Store(true)
	}
	kv, err := do(p.rc.B().Blpop().Key(keys...).Timeout(secs).Build()).AsStrSlice()
	if rueidis.IsRedisNil(err) {
		return firstRes, 0, nil, nil
	}
	if err != nil {
		return firstRes, 0, nil, err
	}
	if len(kv) != 2 {
		return firstRes, 0, nil, nil
	}
	i, msgs = index(keys, kv[0]), kv[1:]
	if max > 1 {
		more, err := p.rc.Do(ctx, p.rc.B().Lpop().Key(kv[0]).Count(int64(max-1)).Build()).AsStrSlice()
		if err != nil && !rueidis.IsRedisNil(err) {
			// The first message is already ours; hand it over and report nothing.
			return firstRes, i, msgs, nil
		}
		msgs = append(msgs, more...)
	}
	return firstRes, i, msgs, nil
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
