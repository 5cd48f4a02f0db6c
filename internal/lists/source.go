package lists

import (
	"context"
	"errors"
	"time"

	"github.com/redis/rueidis"
)

// Msg is a request taken from one of a Source's lists.
type Msg struct {
	Body string
	list int // index in Source.names
}

// Source takes the requests of a queue and its shards for one server, at most
// once (popped) or at least once (moved to processing lists). It is safe for
// concurrent use.
type Source struct {
	names     []string
	popper    *Popper
	reliables []*Reliable // one per list in at-least-once mode, else nil
}

// NewSource returns the source of queue over shards lists (ShardNames). With
// heartbeat > 0 it delivers at least once, as server id.
func NewSource(rc rueidis.Client, queue string, shards int, id string, heartbeat time.Duration) *Source {
	s := &Source{names: ShardNames(queue, shards), popper: NewPopper(rc)}
	if heartbeat > 0 {
		for _, name := range s.names {
			s.reliables = append(s.reliables, NewReliable(rc, name, id, heartbeat))
		}
	}
	return s
}

// Loops returns the list each pop loop should serve: two on a single list, so
// that one pop waits in Redis while the other goes back for more, else one on
// each shard.
func (s *Source) Loops() []int {
	if len(s.names) == 1 {
		return []int{0, 0}
	}
	loops := make([]int, len(s.names))
	for i := range loops {
		loops[i] = i
	}
	return loops
}

// Reliable reports whether s delivers at least once.
func (s *Source) Reliable() bool { return s.reliables != nil }

// Pop takes up to max requests from list i, waiting up to timeout for the
// first. It must not be cancelled while it waits (see Popper.Pop).
func (s *Source) Pop(ctx context.Context, i int, timeout time.Duration, max int) ([]Msg, error) {
	var bodies []string
	var err error
	if s.reliables != nil {
		bodies, err = s.reliables[i].Pop(ctx, timeout, max)
	} else {
		bodies, err = s.popper.Pop(ctx, s.names[i], timeout, max)
	}
	msgs := make([]Msg, len(bodies))
	for j, b := range bodies {
		msgs[j] = Msg{Body: b, list: i}
	}
	return msgs, err
}

// Ack returns where and what to remove once m is answered: nothing at most once.
func (s *Source) Ack(m Msg) (list, ack string) {
	if s.reliables == nil {
		return "", ""
	}
	return s.reliables[m.list].Processing(), m.Body
}

// Drop forgets m, which gets no response.
func (s *Source) Drop(ctx context.Context, m Msg) error {
	if s.reliables == nil {
		return nil
	}
	return s.reliables[m.list].Ack(ctx, m.Body)
}

// Beat renews the heartbeats and gives back the requests of silent servers,
// returning how many it gave back.
func (s *Source) Beat(ctx context.Context) (int64, error) {
	var total int64
	for _, r := range s.reliables {
		if err := r.Beat(ctx); err != nil {
			return total, err
		}
		n, err := r.Rescue(ctx)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Leave ends the heartbeats, for a server that stops with nothing in flight.
func (s *Source) Leave(ctx context.Context) error {
	var errs []error
	for _, r := range s.reliables {
		errs = append(errs, r.Leave(ctx))
	}
	return errors.Join(errs...)
}
