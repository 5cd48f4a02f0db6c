package lists

import (
	"context"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// MaxPopWait bounds how long a pop, and the reply that carries what it took,
// may take; callers give pops a context that ends after it. A request found in
// a processing list that no pop or handler of its server has held for longer
// is stranded: its pop's reply was lost, or its response could not be pushed.
const MaxPopWait = 5 * time.Second

// held tracks the requests a server has moved into one processing list and
// not yet settled (answered and removed, dropped, or given back), so that
// the server can find those of its own that nothing holds.
type held struct {
	mu       sync.Mutex
	n        map[string]int       // request -> copies held
	suspects map[string]time.Time // request not held -> when first seen so
}

func (h *held) add(msgs []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == nil {
		h.n = make(map[string]int)
	}
	for _, m := range msgs {
		h.n[m]++
	}
}

func (h *held) release(msg string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n[msg] <= 1 {
		delete(h.n, msg)
	} else {
		h.n[msg]--
	}
}

// stranded compares the processing list's content, oldest first, with what
// is held, and returns, oldest first, the requests that nothing has held
// since a scan at least after ago.
func (h *held) stranded(content []string, now time.Time, after time.Duration) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	extra := make(map[string]int) // copies in the list beyond those held
	for _, m := range content {
		extra[m]++
	}
	ripe := make(map[string]int)
	suspects := make(map[string]time.Time)
	for m, n := range extra {
		if n -= h.n[m]; n <= 0 {
			continue
		}
		since, ok := h.suspects[m]
		if !ok {
			since = now
		}
		if now.Sub(since) >= after {
			ripe[m] = n
		} else {
			suspects[m] = since
		}
	}
	h.suspects = suspects
	var out []string
	for _, m := range content {
		if ripe[m] > 0 {
			ripe[m]--
			out = append(out, m)
		}
	}
	return out
}

// pop moves up to max requests from l to its processing list, waiting up to
// timeout for the first. What it moved is safe in the processing list even if
// ctx ends or the reply is lost; the server finds it again (held.stranded).
// Under load, pipelined LMOVEs take what the list holds in one round trip;
// only when they find it empty does a blocking move wait, and what it brings
// is served at once: the next pop takes what came meanwhile.
func (l *list) pop(ctx context.Context, rc rueidis.Client, timeout time.Duration, max int) ([]string, error) {
	if max > 1 {
		msgs, err := l.move(ctx, rc, max)
		if err != nil || len(msgs) > 0 {
			return msgs, err
		}
	}
	cmd := rc.B().Blmove().Source(l.name).Destination(l.processing).Left().Right().Timeout(timeout.Seconds()).Build()
	first, err := rc.Do(abortable(ctx), cmd).ToString()
	if rueidis.IsRedisNil(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return []string{first}, nil
}

// move moves up to max requests from l to its processing list with LMOVEs
// in one round trip, each atomic: as many as the last move brought, twice
// over, so that few come back empty. It reports an error only when nothing
// moved: what did move must be served, and a failing LMOVE moved nothing.
func (l *list) move(ctx context.Context, rc rueidis.Client, max int) ([]string, error) {
	n := min(max, int(2*l.moved.Load())+2)
	cmds := make(rueidis.Commands, n)
	for i := range cmds {
		cmds[i] = rc.B().Lmove().Source(l.name).Destination(l.processing).Left().Right().Build()
	}
	var msgs []string
	var first error
	for _, r := range rc.DoMulti(ctx, cmds...) {
		v, err := r.ToString()
		switch {
		case err == nil:
			msgs = append(msgs, v)
		case !rueidis.IsRedisNil(err) && first == nil:
			first = err
		}
	}
	l.moved.Store(int32(len(msgs)))
	if len(msgs) > 0 {
		return msgs, nil
	}
	return nil, first
}
