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
	rc      rueidis.Client
	noLMPop atomic.Bool // set once the server said it has no BLMPOP
}

// NewPopper returns a Popper that talks to rc.
func NewPopper(rc rueidis.Client) *Popper { return &Popper{rc: rc} }

// Pop waits up to timeout for key to hold messages and takes at most max of them.
// It returns no messages and no error when the wait times out. A cancelled ctx may
// lose messages Redis already popped, so callers that must not lose any leave ctx
// alone and rely on timeout to come back.
func (p *Popper) Pop(ctx context.Context, key string, timeout time.Duration, max int) ([]string, error) {
	secs := timeout.Seconds()
	if !p.noLMPop.Load() {
		kv, err := p.rc.Do(ctx, p.rc.B().Blmpop().Timeout(secs).Numkeys(1).Key(key).Left().Count(int64(max)).Build()).AsLMPop()
		switch {
		case err == nil:
			return kv.Values, nil
		case rueidis.IsRedisNil(err):
			return nil, nil
		case !isUnknownCommand(err):
			return nil, err
		}
		p.noLMPop.Store(true)
	}
	kv, err := p.rc.Do(ctx, p.rc.B().Blpop().Key(key).Timeout(secs).Build()).AsStrSlice()
	if rueidis.IsRedisNil(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(kv) != 2 {
		return nil, nil
	}
	msgs := kv[1:]
	if max > 1 {
		more, err := p.rc.Do(ctx, p.rc.B().Lpop().Key(key).Count(int64(max-1)).Build()).AsStrSlice()
		if err != nil && !rueidis.IsRedisNil(err) {
			// The first message is already ours; hand it over and report nothing.
			return msgs, nil
		}
		msgs = append(msgs, more...)
	}
	return msgs, nil
}

func isUnknownCommand(err error) bool {
	rerr, ok := rueidis.IsRedisErr(err)
	return ok && strings.Contains(strings.ToLower(rerr.Error()), "unknown command")
}
