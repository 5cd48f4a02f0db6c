package server

import (
	"sync/atomic"
	"time"

	"github.com/redisrpc/redisrpc/internal/lists"
)

// Health is what a probe learns of a server.
type Health struct {
	Live, Ready bool
	Reason      string // why not, or what it does: for a person
}

// atomicTime is a time in Unix ns; 0 for never. The marks of Health are:
// the last beat that registered the server, the last pop Redis answered,
// and the last pop that returned, answered or failed.
type atomicTime = atomic.Int64

const (
	// popStale is how long a loop may go without a pop Redis answers
	// before the server counts as not taking requests: pops wait at most
	// PollInterval, a slow Redis MaxPopWait.
	popStale = lists.MaxPopWait + 2*PollInterval
	// loopStale is how long a loop may go without any pop returning,
	// answered or not, before it counts as stuck.
	loopStale = 2*lists.MaxPopWait + 2*maxBackoff + 2*PollInterval
)

// Health says whether s is live (Serve runs and its loops turn, or its
// every slot is busy) and ready (live, registered within its lease, taking
// requests, and not stopping).
func (s *Server) Health() Health {
	s.mu.Lock()
	r, started := s.cur, s.started
	s.mu.Unlock()
	if r == nil {
		return Health{Reason: "not serving: Serve has not been called, or has returned"}
	}
	now := time.Now().UnixNano()
	age := func(mark int64) time.Duration {
		if mark == 0 {
			return time.Duration(now - started.UnixNano())
		}
		return time.Duration(now - mark)
	}
	_, _, inFlight := s.Counts()
	busy := inFlight >= int64(s.cfg.Concurrency)
	switch {
	case r.stopped():
		return Health{Live: true, Reason: "shutting down: finishing the requests it took"}
	case !busy && age(s.marks.looped.Load()) > loopStale:
		return Health{Reason: "stuck: no pop has returned for " + age(s.marks.looped.Load()).Round(time.Millisecond).String()}
	case s.marks.registered.Load() == 0 || age(s.marks.registered.Load()) > s.cfg.Lease:
		return Health{Live: true, Reason: "not registered: its beats fail (is Redis reachable?)"}
	case !busy && age(s.marks.popped.Load()) > popStale:
		return Health{Live: true, Reason: "not taking requests: its pops fail (is Redis reachable?)"}
	case busy:
		return Health{Live: true, Ready: true, Reason: "serving, every slot busy"}
	}
	return Health{Live: true, Ready: true, Reason: "serving"}
}
