package lists

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/internal/keys"
)

// Msg is a request taken from one of a Source's lists, or from the
// server's inbox.
type Msg struct {
	Body  string
	list  int  // index in Source.lists
	inbox bool // from the inbox: served at most once whatever the mode
}

// Source takes the requests of a queue and its shards for one server, at most
// once (popped) or at least once (moved to processing lists), and those of
// the server's own inbox (keys.Inbox), always at most once; it keeps the
// server's lease on each list. It is safe for concurrent use.
type Source struct {
	rc         rueidis.Client
	id         string
	inbox      string
	lease      time.Duration
	reliable   bool
	redelivery Redelivery
	// The pops of requests at most once are never cancelled (Pop); rueidis
	// then reads their replies in the popping goroutine. That of the inbox
	// at least once is.
	popper, cancellable *Popper
	lists               []*list
	byProc              map[string]*list // by processing list name
	loops               []Loop
}

// list is one request list of a Source and the keys of the server on it.
type list struct {
	name, processing, leases string
	held                     held         // at least once
	moved                    atomic.Int32 // requests the last move brought, at least once
}

// Loop is what one pop loop of a server pops: a list, or the inbox, or at
// most once both; and at most once where it does not pop the inbox, a wake
// list of its own, where Wake puts the token that ends its pop.
type Loop struct {
	list  int    // index in Source.lists; -1 for the inbox alone
	inbox bool   // the loop pops the inbox, where Wake puts its tokens
	wake  string // else, at most once, the loop's own wake list
}

// List returns the index of the list loop pops among the source's lists
// (0 the queue itself, then the shards), or -1 for the inbox alone.
func (l Loop) List() int { return l.list }

// wakeToken is what Wake pushes to end a pop. It is not JSON, so no request
// is ever taken for it.
const wakeToken = "\x00redisrpc:wake"

// Beat is what one beat of a Source did.
type Beat struct {
	Rescued  int64 // requests of servers whose lease ran out, given back
	Stranded int64 // requests of this server that nothing held, given back
	Dead     []Msg // requests given back too often, now dead letters
	Lapsed   bool  // this server's lease had run out before the beat renewed it
	Held     bool  // the lease on the queue itself, where clients look, was renewed
}

// NewSource returns the source of queue over shards lists (keys.Shards) for
// the server id, whose leases last lease. With reliable it delivers at least
// once, and gives back requests as d says.
func NewSource(rc rueidis.Client, queue string, shards int, id string, lease time.Duration, reliable bool, d Redelivery) *Source {
	s := &Source{rc: rc, id: id, inbox: keys.Inbox(queue, id), lease: lease, reliable: reliable, redelivery: d, popper: NewPopper(rc, false), cancellable: NewPopper(rc, true), byProc: map[string]*list{}}
	for i, name := range keys.Shards(queue, shards) {
		l := &list{name: name, processing: keys.Processing(name, id), leases: keys.Leases(name)}
		s.lists = append(s.lists, l)
		s.byProc[l.processing] = l
		// Two pops on a single list, so that one waits in Redis while the
		// other goes back for more; one on each of several. At most once the
		// pops of the queue itself take the inbox too, which shares its slot
		// and carries their wake tokens; those of other shards have wake
		// lists of their own. At least once BLMOVE takes one list, and
		// cancelling it ends it: the inbox has a pop of its own.
		for range 1 + btoi(shards <= 1) {
			loop := Loop{list: i}
			switch {
			case reliable:
			case i == 0:
				loop.inbox = true
			default:
				loop.wake = keys.Wake(name, id)
			}
			s.loops = append(s.loops, loop)
		}
	}
	if reliable {
		s.loops = append(s.loops, Loop{list: -1, inbox: true})
	}
	return s
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Loops returns what each pop loop of the server should pop.
func (s *Source) Loops() []Loop { return s.loops }

// Reliable reports whether s delivers at least once.
func (s *Source) Reliable() bool { return s.reliable }

// Pop takes up to limit requests for loop, waiting up to timeout for the
// first, and returns none once Wake was called. At most once, its pop is
// not cancelled, since what Redis popped would be lost: it ends at its
// timeout, or at ctx's deadline when Redis is silent for longer; at least
// once, it ends when ctx does, and what Redis moved meanwhile stays in the
// processing list, where Leave or the beats find it. ctx should end after
// MaxPopWait.
func (s *Source) Pop(ctx context.Context, loop Loop, timeout time.Duration, limit int) ([]Msg, error) {
	msgs, _, err := s.PopAfter(ctx, nil, loop, timeout, limit)
	return msgs, err
}

// PopAfter is Pop with the commands first ahead of the pop, in one write,
// and returns their replies too: at most once, a response pushed with the
// pop that takes the next request. Not on Redis Cluster, nor at least once
// for a list, where it runs first on its own before the pop.
func (s *Source) PopAfter(ctx context.Context, first rueidis.Commands, loop Loop, timeout time.Duration, limit int) ([]Msg, []rueidis.RedisResult, error) {
	var bodies []string
	var firstRes []rueidis.RedisResult
	var err error
	inbox := false
	if s.reliable && loop.list >= 0 {
		if len(first) > 0 {
			firstRes = s.rc.DoMulti(ctx, first...)
		}
		l := s.lists[loop.list]
		bodies, err = l.pop(ctx, s.rc, timeout, limit)
		l.held.add(bodies)
	} else {
		var keys [2]string // the wake or inbox list first: a token ends the pop first
		n := 0
		if loop.wake != "" {
			keys[n], n = loop.wake, n+1
		}
		if loop.inbox {
			keys[n], n = s.inbox, n+1
		}
		if loop.list >= 0 {
			keys[n], n = s.lists[loop.list].name, n+1
		}
		popper := s.popper
		if s.reliable { // the inbox alone, at least once: cancelled at a stop
			popper = s.cancellable
		}
		var from int
		firstRes, from, bodies, err = popper.PopAfter(ctx, first, keys[:n], timeout, limit)
		switch {
		case len(bodies) == 0:
		case keys[from] == loop.wake:
			bodies = nil // the token of Wake
		case keys[from] == s.inbox:
			inbox = true
			bodies = s.dropTokens(ctx, bodies)
		}
	}
	msgs := make([]Msg, len(bodies))
	for j, b := range bodies {
		msgs[j] = Msg{Body: b, list: max(loop.list, 0), inbox: inbox}
	}
	return msgs, firstRes, err
}

// dropTokens removes Wake's tokens from what a pop took from the inbox, and
// puts back all but one, for the other pops of the inbox.
func (s *Source) dropTokens(ctx context.Context, bodies []string) []string {
	kept := bodies[:0]
	tokens := 0
	for _, b := range bodies {
		if b == wakeToken {
			tokens++
		} else {
			kept = append(kept, b)
		}
	}
	if tokens > 1 {
		back := make([]string, tokens-1)
		for i := range back {
			back[i] = wakeToken
		}
		s.rc.Do(context.WithoutCancel(ctx), s.rc.B().Lpush().Key(s.inbox).Element(back...).Build())
	}
	return kept
}

// Wake ends the waiting pops of this server that pop with BLMPOP without
// losing what they take; the caller cancels the others (BLMOVE, at least
// once).
func (s *Source) Wake(ctx context.Context) error {
	var cmds rueidis.Commands
	var tokens []string
	for _, loop := range s.loops {
		switch {
		case loop.inbox:
			tokens = append(tokens, wakeToken)
		case loop.wake != "":
			cmds = append(cmds, s.rc.B().Rpush().Key(loop.wake).Element(wakeToken).Build(),
				s.rc.B().Expire().Key(loop.wake).Seconds(10).Build())
		}
	}
	var errs []error
	if len(tokens) > 0 {
		// The inbox holds CallAll's requests too, which expire with their
		// callers' deadlines: its expiry is only ever extended.
		errs = append(errs, PushExtend(ctx, s.rc, s.inbox, 10*time.Second, tokens...))
	}
	if len(cmds) > 0 {
		errs = append(errs, FirstErr(s.rc.DoMulti(ctx, cmds...)))
	}
	return errors.Join(errs...)
}

// Cancellable reports whether loop's pops may be cancelled: at least once,
// what BLMOVE moved stays in the processing list.
func (s *Source) Cancellable(loop Loop) bool { return s.reliable && loop.list >= 0 }

// Ack returns where and what to remove once m is answered: nothing at most
// once, and for requests of the inbox.
func (s *Source) Ack(m Msg) (list, ack string) {
	if !s.reliable || m.inbox {
		return "", ""
	}
	return s.lists[m.list].processing, m.Body
}

// Kept returns the key under which the answer to m, a request with response
// queue rq and id, is kept (WithDedupe), or "" where none is: where the
// servers keep no answers, for a request of the inbox, and for one whose rq
// or id holds U+FFFD.
func (s *Source) Kept(m Msg, rq, id string) string {
	// Where the request's strings held invalid UTF-8 or a lone surrogate,
	// the decoder made them U+FFFD, and the scripts, which decode the
	// request with cjson, would not find the same key: no answer is kept.
	if !s.redelivery.Dedupe || m.inbox || strings.ContainsRune(rq, utf8.RuneError) || strings.ContainsRune(id, utf8.RuneError) {
		return ""
	}
	return keys.Answered(s.lists[m.list].name, rq, id)
}

// Settled tells s that the request ack of the processing list list, from
// Ack, was removed, or could not be answered or removed: s holds it no more,
// and a beat gives it back if it is still there.
func (s *Source) Settled(list, ack string) {
	if l := s.byProc[list]; l != nil {
		l.held.release(ack)
	}
}

// Drop forgets m, which gets no response.
func (s *Source) Drop(ctx context.Context, m Msg) error {
	if !s.reliable || m.inbox {
		return nil
	}
	l := s.lists[m.list]
	defer l.held.release(m.Body)
	return s.rc.Do(ctx, s.rc.B().Lrem().Key(l.processing).Count(1).Element(m.Body).Build()).Error()
}

// GiveBack puts msgs, taken and not run, back at the head of their lists in
// their order, for other servers to take.
func (s *Source) GiveBack(ctx context.Context, msgs []Msg) error {
	var errs []error
	var inbox []string
	for _, m := range msgs {
		if m.inbox {
			inbox = append(inbox, m.Body)
		}
	}
	if len(inbox) > 0 {
		slices.Reverse(inbox)
		errs = append(errs, s.rc.Do(ctx, s.rc.B().Lpush().Key(s.inbox).Element(inbox...).Build()).Error())
	}
	for i, l := range s.lists {
		var bodies []string
		for _, m := range msgs {
			if m.list == i && !m.inbox {
				bodies = append(bodies, m.Body)
			}
		}
		if len(bodies) == 0 {
			continue
		}
		if s.reliable {
			err := giveBackScript.Exec(ctx, s.rc, []string{l.name, l.processing}, bodies).Error()
			for _, b := range bodies {
				l.held.release(b)
			}
			errs = append(errs, err)
			continue
		}
		slices.Reverse(bodies) // LPUSH puts the last element first
		errs = append(errs, s.rc.Do(ctx, s.rc.B().Lpush().Key(l.name).Element(bodies...).Build()).Error())
	}
	return errors.Join(errs...)
}

// Beat renews the server's leases, gives back the requests of servers whose
// leases ran out and, at least once, those of its own that nothing held for
// longer than a pop may take. It goes through every list whatever fails.
func (s *Source) Beat(ctx context.Context) (Beat, error) {
	var b Beat
	var errs []error
	now := time.Now()
	for i, l := range s.lists {
		lapsed, expired, err := renew(ctx, s.rc, l.leases, s.id, s.lease)
		if err != nil {
			errs = append(errs, fmt.Errorf("renewing the lease on %s: %w", l.name, err))
			continue
		}
		b.Held = b.Held || i == 0
		b.Lapsed = b.Lapsed || lapsed
		for _, id := range expired {
			n, dead, err := rescue(ctx, s.rc, l.name, keys.Processing(l.name, id), l.leases, id, s.redelivery)
			b.Rescued += n
			b.Dead = appendMsgs(b.Dead, dead, i)
			if err != nil {
				errs = append(errs, fmt.Errorf("giving back the requests of server %s on %s: %w", id, l.name, err))
			}
		}
		if !s.reliable {
			continue
		}
		content, err := s.rc.Do(ctx, s.rc.B().Lrange().Key(l.processing).Start(0).Stop(-1).Build()).AsStrSlice()
		if err != nil {
			errs = append(errs, fmt.Errorf("reading %s: %w", l.processing, err))
			continue
		}
		if stranded := l.held.stranded(content, now, MaxPopWait); len(stranded) > 0 {
			args := append(append([]string{s.id}, s.redelivery.args(l.name)...), stranded...)
			n, dead, err := counted(strandedScript.Exec(ctx, s.rc, []string{l.name, l.processing, keys.Deliveries(l.name), keys.Dead(l.name)}, args).ToArray())
			b.Stranded += n
			b.Dead = appendMsgs(b.Dead, dead, i)
			if err != nil {
				errs = append(errs, fmt.Errorf("giving back stranded requests on %s: %w", l.name, err))
			}
		}
	}
	return b, errors.Join(errs...)
}

// Leave gives back what is left in the processing lists and ends the
// server's leases, for a server that stops. At least once, the server stays
// in the lease sets with leases that have run out (see leaveScript).
func (s *Source) Leave(ctx context.Context) error {
	keep := "0"
	if s.reliable {
		keep = "1"
	}
	var errs []error
	for _, l := range s.lists {
		errs = append(errs, leaveScript.Exec(ctx, s.rc, []string{l.name, l.processing, l.leases}, []string{s.id, keep, strconv.FormatInt(LeaseGrace.Milliseconds(), 10)}).Error())
	}
	// Requests in the inbox were meant for this server alone.
	dels := []string{s.inbox}
	for _, loop := range s.loops {
		if loop.wake != "" {
			dels = append(dels, loop.wake)
		}
	}
	for _, k := range dels {
		errs = append(errs, s.rc.Do(ctx, s.rc.B().Del().Key(k).Build()).Error())
	}
	return errors.Join(errs...)
}

func appendMsgs(dst []Msg, bodies []string, list int) []Msg {
	for _, b := range bodies {
		dst = append(dst, Msg{Body: b, list: list})
	}
	return dst
}

// FirstErr returns the first error among the results of a pipeline, or nil.
func FirstErr(rs []rueidis.RedisResult) error {
	for _, r := range rs {
		if err := r.Error(); err != nil {
			return err
		}
	}
	return nil
}
