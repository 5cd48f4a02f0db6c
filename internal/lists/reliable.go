package lists

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// moveScript moves up to ARGV[1] requests from the head of the queue to the
// tail of a processing list, atomically, and returns them.
//
//	KEYS[1] request queue, KEYS[2] processing list; ARGV[1] how many at most
var moveScript = rueidis.NewLuaScript(`
local out = {}
for i = 1, tonumber(ARGV[1]) do
  local v = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not v then break end
  out[i] = v
end
return out`)

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

// reliablePop moves up to max requests from list to processing, waiting up
// to timeout for the first. What it moved is safe in the processing list even
// if ctx ends or the reply is lost; the server finds it again (held.stranded).
func reliablePop(ctx context.Context, rc rueidis.Client, list, processing string, timeout time.Duration, max int) ([]string, error) {
	cmd := rc.B().Blmove().Source(list).Destination(processing).Left().Right().Timeout(timeout.Seconds()).Build().UnblockOnCancel()
	first, err := rc.Do(ctx, cmd).ToString()
	if rueidis.IsRedisNil(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	msgs := []string{first}
	if max > 1 {
		more, err := moveScript.Exec(ctx, rc, []string{list, processing}, []string{strconv.Itoa(max - 1)}).AsStrSlice()
		if err == nil {
			msgs = append(msgs, more...)
		}
	}
	return msgs, nil
}
