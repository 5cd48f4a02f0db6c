package lists

import (
	"context"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/internal/deadline"
)

// Item is one message for the list Key. ID lets the error callback tell whose
// messages failed. Ack, when set, is removed from the list AckList once the
// message is pushed: a request leaves a processing list only when answered.
type Item struct {
	Key, Value, ID string
	AckList, Ack   string
}

// PusherConfig configures a Pusher.
type PusherConfig struct {
	TTL     int64                          // seconds; > 0 gives every list pushed to that expiry
	Inline  bool                           // Push may send, and so block
	OnError func(failed []Item, err error) // items that were not pushed; nil failed: an Ack failed
	// OnSettled, if set, is called for each item with an Ack once its Ack was
	// removed, or could not be, or the item could not be pushed.
	OnSettled func(it Item)
}

// Pusher appends messages to lists and combines concurrent pushes: what is
// queued while one batch is in flight goes out in the next, as one RPUSH per
// list (and one EXPIRE per list when TTL is set) in one round trip. Inline, the
// goroutine that finds the Pusher idle sends the batch itself, so a lone push
// pays no hand-off, and hands over to a drain goroutine after maxRounds
// batches; otherwise a drain goroutine always sends, so that Push never
// blocks on Redis. It is safe for concurrent use.
type Pusher struct {
	rc  rueidis.Client
	cfg PusherConfig

	mu      sync.Mutex
	queued  []Item
	busy    bool // a goroutine is sending
	stopped bool // Stop was called: Push refuses
	drains  sync.WaitGroup
}

const (
	maxRounds    = 4
	maxItems     = 512
	maxBytes     = 1 << 20
	writeTimeout = 10 * time.Second
)

// NewPusher returns a Pusher. Its callbacks must not block.
func NewPusher(rc rueidis.Client, cfg PusherConfig) *Pusher {
	return &Pusher{rc: rc, cfg: cfg}
}

// Push queues it and makes sure it is sent. It reports false, and queues
// nothing, once Stop was called.
func (p *Pusher) Push(it Item) bool {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return false
	}
	p.queued = append(p.queued, it)
	if p.busy {
		p.mu.Unlock()
		return true
	}
	p.busy = true
	if !p.cfg.Inline {
		p.drain()
		p.mu.Unlock()
		return true
	}
	p.mu.Unlock()
	p.send(maxRounds)
	return true
}

// Stop makes later pushes fail, forgets what is queued and not yet sent, and
// waits for the batch being sent.
func (p *Pusher) Stop() {
	p.mu.Lock()
	p.stopped = true
	p.queued = nil
	p.mu.Unlock()
	p.drains.Wait()
}

// drain starts a goroutine that sends until nothing is queued. p.mu must be held.
func (p *Pusher) drain() {
	p.drains.Add(1)
	go func() {
		defer p.drains.Done()
		p.send(-1)
	}()
}

// Wait waits for drain goroutines; call it when no Push can come any more.
func (p *Pusher) Wait() { p.drains.Wait() }

// send sends batches until none is queued, or hands over after rounds batches
// (rounds < 0: never).
func (p *Pusher) send(rounds int) {
	for i := 0; ; i++ {
		p.mu.Lock()
		if len(p.queued) == 0 {
			p.busy = false
			p.mu.Unlock()
			return
		}
		if i == rounds {
			p.drain()
			p.mu.Unlock()
			return
		}
		batch := p.take()
		p.mu.Unlock()
		p.write(batch)
	}
}

// take removes a batch of bounded size from the queue. p.mu must be held.
func (p *Pusher) take() []Item {
	n, size := 0, 0
	for n < len(p.queued) && n < maxItems && (n == 0 || size+len(p.queued[n].Value) <= maxBytes) {
		size += len(p.queued[n].Value)
		n++
	}
	batch := p.queued[:n:n]
	if n == len(p.queued) {
		p.queued = nil
	} else {
		p.queued = p.queued[n:]
	}
	return batch
}

// write pushes batch, grouped by list in order of first appearance.
func (p *Pusher) write(batch []Item) {
	var keys []string
	groups := make(map[string][]string, 1)
	for _, it := range batch {
		if _, ok := groups[it.Key]; !ok {
			keys = append(keys, it.Key)
		}
		groups[it.Key] = append(groups[it.Key], it.Value)
	}
	cmds := make(rueidis.Commands, 0, 2*len(keys))
	for _, k := range keys {
		cmds = append(cmds, p.rc.B().Rpush().Key(k).Element(groups[k]...).Build())
		if p.cfg.TTL > 0 {
			cmds = append(cmds, p.rc.B().Expire().Key(k).Seconds(p.cfg.TTL).Build())
		}
	}
	// Most batches go out with no timer: see package deadline.
	ctx := deadline.New(context.Background(), time.Now().Add(writeTimeout))
	defer ctx.Stop()
	res := p.rc.DoMulti(ctx, cmds...)
	step := 1
	if p.cfg.TTL > 0 {
		step = 2
	}
	var acks rueidis.Commands
	var acked []Item
	for i, k := range keys {
		err := res[i*step].Error()
		var failed []Item
		for _, it := range batch {
			switch {
			case it.Key != k:
			case err != nil:
				failed = append(failed, it)
				p.settled(it)
			case it.Ack != "":
				acks = append(acks, p.rc.B().Lrem().Key(it.AckList).Count(1).Element(it.Ack).Build())
				acked = append(acked, it)
			}
		}
		if err != nil && p.cfg.OnError != nil {
			p.cfg.OnError(failed, err)
		}
	}
	if len(acks) > 0 {
		var ackErr error
		for i, r := range p.rc.DoMulti(ctx, acks...) {
			if err := r.Error(); err != nil && ackErr == nil {
				// The response went out; the request stays in the processing
				// list and runs again: at least once, never lost.
				ackErr = err
			}
			p.settled(acked[i])
		}
		if ackErr != nil && p.cfg.OnError != nil {
			p.cfg.OnError(nil, ackErr)
		}
	}
}

func (p *Pusher) settled(it Item) {
	if it.Ack != "" && p.cfg.OnSettled != nil {
		p.cfg.OnSettled(it)
	}
}
