package server

import (
	"runtime"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/internal/deadline"
	"github.com/redisrpc/redisrpc/internal/lists"
)

// runLoop runs loop until the server stops, and then tells Serve, unless the
// stop told it already (lone.go); sibling reports whether another loop pops
// the same list. A handler that exits with runtime.Goexit in the loop's
// goroutine ends it without a word: the loop goes on in another.
func (r *run) runLoop(loop lists.Loop, share int, sibling bool) {
	if !r.loop(loop, share, sibling) {
		r.ended <- struct{}{}
	}
}

// loop pops requests from one list while slots are free, taking at most share
// at once so that other lists get theirs, and hands them to workers, or runs
// a lone one itself (lone.go). It returns when the server stops, reporting
// whether the stop counted it as ended already; what a pop brings after that
// goes back.
func (r *run) loop(loop lists.Loop, share int, sibling bool) (told bool) {
	s := r.s
	loner := r.newLoner(sibling)
	defer loner.end()
	var answer *lists.Item // of the last lone request, pushed with the next pop
	backoff := time.Duration(0)
	// A BLMPOP is not cancelled at a stop, since what Redis popped would be
	// lost: PollInterval or a Wake brings it back, and only a Redis silent
	// for longer than that meets its deadline, stopPopGrace, which rueidis
	// keeps as it reads the reply in this goroutine (Source.Pop). At least
	// once, MaxPopWait covers a slow or vanished server.
	parent, wait := r.pops, lists.MaxPopWait
	if !s.source.Cancellable(loop) {
		parent, wait = r.late, stopPopGrace
	}
	window := deadline.NewWindow(parent, wait, wait/10)
	for {
		n, ok := 0, false
		if answer != nil {
			// The answer goes with the next pop only if that pop goes at
			// once: where the sibling took the slot the handler freed, it
			// would wait for that pop's return.
			if n, ok = r.reserveNow(loop.List(), share); !ok {
				s.pusher.Push(*answer)
				answer = nil
			}
		}
		if !ok {
			if n, ok = r.reserve(loop.List(), share); !ok {
				return
			}
		}
		var first rueidis.Commands
		if answer != nil {
			first = s.pusher.Alone(*answer)
		}
		msgs, pushed, err := s.source.PopAfter(window.Context(), first, loop, PollInterval, n)
		if answer != nil {
			s.pusher.Pushed(*answer, pushed)
			answer = nil
		}
		s.marks.looped.Store(time.Now().UnixNano())
		if err == nil {
			s.marks.popped.Store(time.Now().UnixNano())
		}
		r.unreserve(loop.List(), n)
		if r.stopped() {
			r.giveBack(msgs)
			return
		}
		if err != nil {
			// maxBackoff bounds how long after Redis is back this loop notices.
			backoff = min(max(2*backoff, 50*time.Millisecond), maxBackoff)
			s.taking.Fail(err)
			if !r.sleep(backoff) {
				return
			}
			continue
		}
		s.taking.OK()
		backoff = 0
		if len(msgs) > 0 {
			s.pops.Add(1)
			s.taken.Add(int64(len(msgs)))
		}
		lone := loner.alone(msgs)
		for i := 0; i < len(msgs); {
			k, ok := r.acquire(len(msgs) - i)
			if !ok { // stopping: what has not started goes back
				r.giveBack(msgs[i:])
				s.done.Add(int64(len(msgs) - i))
				return
			}
			if lone { // run here, its answer to go with the next pop
				var stopped bool
				if answer, stopped = loner.serve(msgs[0], func() { go r.runLoop(loop, share, sibling) }); stopped {
					return true
				}
				break
			}
			for _, msg := range msgs[i : i+k] {
				select {
				case r.work <- msg:
				default: // no worker idle; there are fewer workers than slots
					r.startWorker(msg)
				}
			}
			i += k
		}
		// Let the workers just handed requests start before this loop goes
		// back to Redis; on a single list another pop waits there already
		// (Source.Loops), and on shards the delay is a goroutine switch.
		if !lone {
			runtime.Gosched()
		}
	}
}

// maxBackoff bounds the waits of a loop after Redis failures.
const maxBackoff = 500 * time.Millisecond

// giveBack puts requests taken by a stopping server back on the queue.
func (r *run) giveBack(msgs []lists.Msg) {
	if len(msgs) == 0 {
		return
	}
	ctx, cancel := r.stopContext()
	defer cancel()
	if err := r.s.source.GiveBack(ctx, msgs); err != nil {
		r.s.log.Error("redisrpc: giving back requests taken while stopping", "queue", r.s.cfg.Queue, "requests", len(msgs), "err", err)
		return
	}
	r.s.log.Debug("redisrpc: gave back requests taken while stopping", "queue", r.s.cfg.Queue, "requests", len(msgs))
}

// Slots: a request holds one from when its pop brings it until it is
// settled; a pop waiting in Redis holds none, so that pops on many lists
// (shards, the inbox) share few slots and none starves: it reserves what it
// may bring, which bounds the count it asks for.

// reserve returns how many requests a pop of list may take: up to limit of
// the slots that neither requests nor other pops hold, or, where pops on
// other lists have reserved every free slot, one, so that every list has a
// pop waiting for its requests while a slot is free. (A second pop on a list
// that has one gets none: it would only take a request that a pop of
// another server could run.) It waits while it may take none, and reports
// false once the server stops.
func (r *run) reserve(list, limit int) (int, bool) {
	return r.slots(func() int { return r.reserveLocked(list, limit) })
}

// reserveNow is reserve where it need not wait, and reports false otherwise,
// or once the server stops.
func (r *run) reserveNow(list, limit int) (int, bool) {
	if r.stopped() {
		return 0, false
	}
	r.slotMu.Lock()
	defer r.slotMu.Unlock()
	n := r.reserveLocked(list, limit)
	return n, n > 0
}

// reserveLocked reserves what a pop of list may take now, up to limit (see reserve),
// and returns it, 0 for nothing. r.slotMu must be held.
func (r *run) reserveLocked(list, limit int) int {
	n := min(r.free-r.reserved, limit)
	if n <= 0 && r.free > 0 && r.popping[list] == 0 {
		n = 1
	}
	if n > 0 {
		r.reserved += n
		r.popping[list]++
	}
	return n
}

// unreserve ends the reservation of a pop of list that returned, and wakes
// the loops that wait for a reservation.
func (r *run) unreserve(list, n int) {
	r.slotMu.Lock()
	r.reserved -= n
	r.popping[list]--
	r.wakeLocked()
	r.slotMu.Unlock()
}

// acquire waits for at least one free slot and takes up to limit, for
// requests a pop brought. It reports false once the server stops.
func (r *run) acquire(limit int) (int, bool) {
	return r.slots(func() int {
		n := min(r.free, limit)
		r.free -= n
		return n
	})
}

// slots calls take under r.slotMu until it takes some, waiting for a
// release or unreservation between tries, and returns what it took; it
// reports false once the server stops, which wins over a free slot.
func (r *run) slots(take func() int) (int, bool) {
	for {
		if r.stopped() {
			return 0, false
		}
		r.slotMu.Lock()
		if n := take(); n > 0 {
			r.slotMu.Unlock()
			return n, true
		}
		if r.freed == nil {
			r.freed = make(chan struct{})
		}
		freed := r.freed
		r.slotMu.Unlock()
		select {
		case <-freed:
		case <-r.stopping:
			return 0, false
		}
	}
}

// wakeLocked wakes every loop waiting in slots. r.slotMu must be held.
func (r *run) wakeLocked() {
	if r.freed != nil {
		close(r.freed)
		r.freed = nil
	}
}

// release returns n handler slots, and wakes every loop waiting for one.
func (r *run) release(n int) {
	if n == 0 {
		return
	}
	r.slotMu.Lock()
	r.free += n
	r.wakeLocked()
	r.slotMu.Unlock()
}

// sleep waits for d, and reports false if the server stops first.
func (r *run) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.stopping:
		return false
	}
}
