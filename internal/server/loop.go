package server

import (
	"errors"
	"runtime"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/internal/deadline"
	"github.com/redisrpc/redisrpc/internal/lists"
)

// loop pops requests from one list while slots are free, taking at most share
// at once so that other lists get theirs, and hands them to workers. It
// returns when the server stops; what a pop brings after that goes back.
func (r *run) loop(loop lists.Loop, share int) {
	s := r.s
	backoff := time.Duration(0)
	// A BLMPOP is not cancelled at a stop, since what Redis popped would be
	// lost: PollInterval or a Wake brings it back, and only a Redis silent
	// for longer than that meets stopPopGrace. MaxPopWait covers a slow or
	// vanished server, and a Redis busy for seconds between popping and
	// replying. (Without cancellation rueidis would run the pop in this
	// goroutine, for about 5 us less CPU per call at one caller; but then
	// only a deadline could end it, and a stop could not be both prompt
	// and patient with a busy Redis.)
	parent := r.pops
	if !s.source.Cancellable(loop) {
		parent = r.late
	}
	window := deadline.NewWindow(parent, lists.MaxPopWait, time.Second)
	var carried lists.Item // a response to send with the next pop
	carrying := false
	pushCarried := func() { // for a pop that is not coming
		if carrying {
			s.pusher.Push(carried)
			carried, carrying = lists.Item{}, false
		}
	}
	for {
		n, ok := r.reserve(loop.List(), share, pushCarried)
		if !ok {
			pushCarried()
			return
		}
		var before rueidis.Commands
		var report func([]rueidis.RedisResult)
		if carrying {
			before, report = s.pusher.Carry(carried)
			carried, carrying = lists.Item{}, false
		}
		msgs, sent, err := s.source.Pop(window.Context(), loop, before, PollInterval, n)
		if report != nil {
			report(results(sent, len(before), err))
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
		for i := 0; i < len(msgs); {
			k, ok := r.acquire(len(msgs) - i)
			if !ok { // stopping: what has not started goes back
				r.giveBack(msgs[i:])
				s.done.Add(int64(len(msgs) - i))
				return
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
		if len(msgs) == 0 {
			continue
		}
		// While another pop of the list waits in Redis, this loop waits for
		// a response, to send it with its pop in one write, until that pop
		// returns. Else it lets the workers just handed requests start
		// before it goes back; on shards the delay is a goroutine switch.
		if carried, carrying = r.awaitCarry(loop.List(), len(msgs)); !carrying {
			runtime.Gosched()
		}
	}
}

// results returns the n results of the commands sent with a pop, or n
// errors where the pop returned fewer (it failed before sending them).
func results(sent []rueidis.RedisResult, n int, err error) []rueidis.RedisResult {
	if len(sent) >= n {
		return sent
	}
	if err == nil {
		err = errors.New("redisrpc: the commands sent with a pop got no reply")
	}
	rs := make([]rueidis.RedisResult, n)
	for i := range rs {
		rs[i] = rueidis.NewErrorResult(err)
	}
	return rs
}

// awaitCarry waits, for a loop of list that just handed requests to
// workers, for a response to send with its next pop: while another pop of
// list is in Redis, until it returns or the server stops. Only the loops of
// the queue itself carry, whose list shares the slot of Go clients'
// response lists.
func (r *run) awaitCarry(list, brought int) (lists.Item, bool) {
	if list != 0 || brought > 1 {
		return lists.Item{}, false
	}
	r.slotMu.Lock()
	if r.popping[list] == 0 || r.stopped() {
		r.slotMu.Unlock()
		return lists.Item{}, false
	}
	if r.returned == nil {
		r.returned = make(chan struct{})
	}
	returned := r.returned
	r.slotMu.Unlock()
	select {
	case it := <-r.carry:
		return it, true
	case <-returned:
	case <-r.stopping:
	}
	return lists.Item{}, false
}

// handOver hands the response it to a loop waiting to send it with its pop,
// and reports whether one took it.
func (r *run) handOver(it lists.Item) bool {
	if !r.s.pusher.Carriable(it, r.carrySlot) {
		return false
	}
	select {
	case r.carry <- it:
		return true
	default:
		return false
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
// Before it waits it calls waiting.
func (r *run) reserve(list, limit int, waiting func()) (int, bool) {
	return r.slots(waiting, func() int {
		n := min(r.free-r.reserved, limit)
		if n <= 0 && r.free > 0 && r.popping[list] == 0 {
			n = 1
		}
		if n > 0 {
			r.reserved += n
			r.popping[list]++
		}
		return n
	})
}

// unreserve ends the reservation of a pop of list that returned, and wakes
// the loops that wait for a reservation.
func (r *run) unreserve(list, n int) {
	r.slotMu.Lock()
	r.reserved -= n
	r.popping[list]--
	r.wakeLocked()
	if list == 0 && r.returned != nil {
		close(r.returned)
		r.returned = nil
	}
	r.slotMu.Unlock()
}

// acquire waits for at least one free slot and takes up to limit, for
// requests a pop brought. It reports false once the server stops.
func (r *run) acquire(limit int) (int, bool) {
	return r.slots(nil, func() int {
		n := min(r.free, limit)
		r.free -= n
		return n
	})
}

// slots calls take under r.slotMu until it takes some, waiting for a
// release or unreservation between tries, and returns what it took; it
// reports false once the server stops, which wins over a free slot. It
// calls waiting, if set, before it first waits.
func (r *run) slots(waiting func(), take func() int) (int, bool) {
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
		if waiting != nil {
			waiting()
			waiting = nil
		}
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
