package lists

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/internal/deadline"
	"github.com/redisrpc/redisrpc/internal/keys"
)

// Item is one message for the list Key. ID lets the error callback tell whose
// messages failed. Ack, when set, is removed from the list AckList once the
// message is pushed: a request leaves a processing list only when answered.
type Item struct {
	Key, Value, ID string
	AckList, Ack   string
	// Keep, when set, is where Value is also written, for KeepTTL, in the
	// transaction that pushes it and removes its Ack: the answer a server
	// keeps (WithDedupe). It is in AckList's slot.
	Keep    string
	KeepTTL time.Duration
	// Until, when set, is how long a push that fails is tried again, with
	// back-off: the answer to a request stays owed while its caller waits.
	Until time.Time
	// Sent, when set, is set once Redis took the push.
	Sent *atomic.Bool
}

// PusherConfig configures a Pusher.
type PusherConfig struct {
	TTL     int64                          // seconds; > 0 gives every list pushed to that expiry
	Inline  bool                           // Push may send, and so block
	OnError func(failed []Item, err error) // items that were not pushed; nil failed: an Ack failed
	// OnSettled, if set, is called for each item with an Ack once its Ack was
	// removed, or could not be, or the item could not be pushed.
	OnSettled func(it Item)
	// OnSent, if set, is called after a batch was pushed.
	OnSent func()
}

// Pusher appends messages to lists and combines concurrent pushes: what is
// queued while one batch is in flight goes out in the next, as one RPUSH per
// list (and one EXPIRE per list when TTL is set) in one round trip. Inline, the
// goroutine that finds the Pusher idle sends the batch itself, so a lone push
// pays no hand-off, and hands over to a drain goroutine after maxRounds
// batches; otherwise a drain goroutine always sends, so that Push never
// blocks on Redis: one that lives until Stop, as a goroutine started for
// each push that finds the Pusher idle would grow a new stack each time.
// It is safe for concurrent use.
type Pusher struct {
	rc      rueidis.Client
	cfg     PusherConfig
	cluster bool // rc talks to Redis Cluster: a transaction keeps to one slot

	mu      sync.Mutex
	queued  []Item
	busy    bool // a goroutine is sending
	stopped bool // Stop was called: Push refuses
	drains  sync.WaitGroup
	window  *deadline.Window // bounds each batch by writeTimeout

	// The drain goroutine of a Pusher that is not Inline, started at the
	// first push: woken by wake, ended by stop.
	wake chan struct{}
	stop chan struct{}

	// Buffers reused from batch to batch: spare, under mu, is the array of
	// a batch sent, for the queue; the others belong to the goroutine that
	// sends (one at a time: busy).
	spare  []Item
	groups []group
	cmds   rueidis.Commands
	values []string

	// Items whose push failed, to be tried again (Item.Until), under mu:
	// resent by a timer's goroutine after backoff.
	retry     []Item
	retryAt   *time.Timer
	resending bool         // a timer's goroutine is sending
	backoff   atomic.Int64 // ns: the wait before the next try
}

const (
	maxRounds    = 4
	maxItems     = 512
	maxBytes     = 1 << 20
	writeTimeout = 5 * time.Second
)

// NewPusher returns a Pusher. Its callbacks must not block.
func NewPusher(rc rueidis.Client, cfg PusherConfig) *Pusher {
	return &Pusher{rc: rc, cfg: cfg, cluster: rc.Mode() == rueidis.ClientModeCluster,
		window: deadline.NewWindow(context.Background(), writeTimeout, time.Second)}
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
// waits for the batch being sent and for the drain goroutine to end.
func (p *Pusher) Stop() {
	p.mu.Lock()
	if !p.stopped && p.stop != nil {
		close(p.stop)
	}
	p.stopped = true
	p.queued = nil
	dropped := p.takeRetries()
	p.mu.Unlock()
	p.settleAll(dropped)
	p.drains.Wait()
}

// takeRetries stops the retry timer and returns the items it would have
// tried again. p.mu must be held.
func (p *Pusher) takeRetries() []Item {
	if p.retryAt != nil {
		p.retryAt.Stop()
		p.retryAt = nil
	}
	items := p.retry
	p.retry = nil
	return items
}

func (p *Pusher) settleAll(items []Item) {
	for _, it := range items {
		p.settled(it)
	}
}

// FlushRetries waits until no failed push waits to be tried again, or until
// ctx ends, when it gives up on those that wait: they are settled unsent.
// It reports how many it gave up on.
func (p *Pusher) FlushRetries(ctx context.Context) int {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		p.mu.Lock()
		if len(p.retry) == 0 && p.retryAt == nil && !p.resending {
			p.mu.Unlock()
			return 0
		}
		p.mu.Unlock()
		select {
		case <-t.C:
		case <-ctx.Done():
			p.mu.Lock()
			dropped := p.takeRetries()
			p.mu.Unlock()
			p.settleAll(dropped)
			return len(dropped)
		}
	}
}

// again keeps the items of a failed push that are to be tried again, and
// returns the others. It starts the timer that resends them.
func (p *Pusher) again(items []Item) (final []Item) {
	p.mu.Lock()
	defer p.mu.Unlock()
	backoff := min(max(2*time.Duration(p.backoff.Load()), 50*time.Millisecond), maxRetryBackoff)
	p.backoff.Store(int64(backoff))
	next := time.Now().Add(backoff)
	for _, it := range items {
		if p.stopped || it.Until.IsZero() || !next.Before(it.Until) {
			final = append(final, it)
			continue
		}
		p.retry = append(p.retry, it)
	}
	if len(p.retry) > 0 && p.retryAt == nil {
		p.retryAt = time.AfterFunc(backoff, p.resend)
	}
	return final
}

// maxRetryBackoff bounds the wait between tries of a failed push.
const maxRetryBackoff = time.Second

// resend queues the items to try again, and sends them unless a batch is
// being sent already, which then sends them.
func (p *Pusher) resend() {
	p.mu.Lock()
	if p.retryAt == nil { // Stop or FlushRetries took them
		p.mu.Unlock()
		return
	}
	p.retryAt = nil
	p.queued = append(p.queued, p.retry...)
	p.retry = nil
	if p.busy || len(p.queued) == 0 {
		p.mu.Unlock()
		return
	}
	p.busy, p.resending = true, true
	p.mu.Unlock()
	p.send(-1)
	p.mu.Lock()
	p.resending = false
	p.mu.Unlock()
}

// Alone returns the commands that push it, a plain item (no Ack, nothing
// kept), as a batch of its own would: for a caller that writes them itself,
// ahead of a command of its own, and hands their replies to Pushed. They
// bypass the Pusher's queue, and so its order.
func (p *Pusher) Alone(it Item) rueidis.Commands {
	cmds := rueidis.Commands{p.rc.B().Rpush().Key(it.Key).Element(it.Value).Build()}
	if p.cfg.TTL > 0 {
		cmds = append(cmds, p.rc.B().Expire().Key(it.Key).Seconds(p.cfg.TTL).Build())
	}
	return cmds
}

// Pushed reports the push of it, whose commands came from Alone, as the
// Pusher reports its batches: res are their replies, or their failure. An
// item that failed is tried again as Item.Until says.
func (p *Pusher) Pushed(it Item, res []rueidis.RedisResult) {
	p.done([]Item{it}, res[0].Error(), false)
}

// drain makes a goroutine send until nothing is queued. p.mu must be held.
func (p *Pusher) drain() {
	if p.cfg.Inline { // only under load, after maxRounds batches
		p.drains.Add(1)
		go func() {
			defer p.drains.Done()
			p.send(-1)
		}()
		return
	}
	if p.wake == nil {
		p.wake, p.stop = make(chan struct{}, 1), make(chan struct{})
		p.drains.Add(1)
		go p.drainUntilStop()
	}
	select {
	case p.wake <- struct{}{}:
	default: // a wake is pending already, and sends what was queued
	}
}

// drainUntilStop is the drain goroutine of a Pusher that is not Inline.
func (p *Pusher) drainUntilStop() {
	defer p.drains.Done()
	for {
		select {
		case <-p.wake:
			p.send(-1)
		case <-p.stop:
			return
		}
	}
}

// Wait waits for the drain goroutines of an Inline Pusher; call it when no
// Push can come any more. (That of a Pusher that is not Inline ends at Stop.)
func (p *Pusher) Wait() { p.drains.Wait() }

// send sends batches until none is queued, or hands over after rounds batches
// (rounds < 0: never).
func (p *Pusher) send(rounds int) {
	var sent []Item // the last batch, if it had an array of its own
	for i := 0; ; i++ {
		p.mu.Lock()
		if sent != nil {
			clear(sent) // hold no message
			p.spare, sent = sent[:0], nil
		}
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
		batch, whole := p.take()
		p.mu.Unlock()
		p.write(batch)
		if whole {
			sent = batch
		}
	}
}

// take removes a batch of bounded size from the queue, and reports whether
// it was the whole queue, whose array then no longer backs the queue. p.mu
// must be held.
func (p *Pusher) take() (batch []Item, whole bool) {
	n, size := 0, 0
	for n < len(p.queued) && n < maxItems && (n == 0 || size+len(p.queued[n].Value) <= maxBytes) {
		size += len(p.queued[n].Value)
		n++
	}
	batch = p.queued[:n:n]
	if n < len(p.queued) {
		p.queued = p.queued[n:]
		return batch, false
	}
	p.queued, p.spare = p.spare, nil
	return batch, true
}

// group is the items of a batch for one list. With ackList set, they are
// pushed and acknowledged together by writeAtomic.
type group struct {
	key, ackList string
	items        []Item
}

// groupItems groups batch by list, and by processing list where an item's
// Ack can be removed in one transaction with its push (in the same hash
// slot, or anywhere but on Redis Cluster), in order of first appearance,
// into dst's array. A batch for one list, the common case, is its own
// group, uncopied.
func (p *Pusher) groupItems(dst []group, batch []Item) []group {
	keyOf := func(it *Item) [2]string {
		if it.Ack != "" && (!p.cluster || keys.Slot(it.AckList) == keys.Slot(it.Key)) {
			return [2]string{it.Key, it.AckList}
		}
		return [2]string{it.Key, ""}
	}
	first := keyOf(&batch[0])
	same := true
	for i := 1; i < len(batch) && same; i++ {
		same = keyOf(&batch[i]) == first
	}
	if same {
		return append(dst[:0], group{key: first[0], ackList: first[1], items: batch})
	}
	groups := dst[:0]
	byKey := make(map[[2]string]int)
	for i := range batch {
		k := keyOf(&batch[i])
		j, ok := byKey[k]
		if !ok {
			j = len(groups)
			byKey[k] = j
			groups = append(groups, group{key: k[0], ackList: k[1]})
		}
		groups[j].items = append(groups[j].items, batch[i])
	}
	return groups
}

// write pushes batch, grouped by list in order of first appearance. Items
// whose Ack can be removed in one transaction with their push are pushed and
// acknowledged at once; the others are acknowledged after they are pushed.
func (p *Pusher) write(batch []Item) {
	groups := p.groupItems(p.groups, batch)
	// The atomic groups first, keeping the order within each kind.
	plain := func(g group) int {
		if g.ackList == "" {
			return 1
		}
		return 0
	}
	slices.SortStableFunc(groups, func(a, b group) int { return cmp.Compare(plain(a), plain(b)) })
	atomic := 0
	for atomic < len(groups) && groups[atomic].ackList != "" {
		atomic++
	}
	ctx := p.window.Context()
	if atomic > 0 {
		p.writeTransactions(ctx, groups[:atomic])
	}
	if atomic < len(groups) {
		p.writePlain(ctx, groups[atomic:])
	}
	clear(groups) // hold no message
	p.groups = groups[:0]
}

// writeTransactions sends the transactions of groups: all in one round trip,
// but on Redis Cluster, where a pipeline with transactions must keep to one
// hash slot (rueidis panics otherwise), one round trip per slot, at once.
// A request may name a response list in any slot, of another shard's list
// among them.
func (p *Pusher) writeTransactions(ctx context.Context, groups []group) {
	if !p.cluster {
		p.writeAtomic(ctx, groups)
		return
	}
	bySlot := map[int][]group{}
	var slots []int
	for _, g := range groups {
		slot := keys.Slot(g.key)
		if _, ok := bySlot[slot]; !ok {
			slots = append(slots, slot)
		}
		bySlot[slot] = append(bySlot[slot], g)
	}
	if len(slots) == 1 {
		p.writeAtomic(ctx, groups)
		return
	}
	var wg sync.WaitGroup
	for _, slot := range slots[1:] {
		wg.Go(func() { p.writeAtomic(ctx, bySlot[slot]) })
	}
	p.writeAtomic(ctx, bySlot[slots[0]])
	wg.Wait()
}

// writeAtomic pushes each group's responses, gives their list its expiry,
// and removes the requests they answer from the processing list, as one
// transaction (MULTI ... EXEC), so that no request stays to run again once
// its caller can have the answer, nor leaves without one; all groups in one
// round trip. (A script did the same at a third more Redis CPU per call.)
func (p *Pusher) writeAtomic(ctx context.Context, groups []group) {
	n := 0
	for _, g := range groups {
		n += 4 + 2*len(g.items)
	}
	cmds := make(rueidis.Commands, 0, n)
	execs := make([]int, len(groups)) // the index of each group's EXEC
	for i, g := range groups {
		values := make([]string, len(g.items))
		for j, it := range g.items {
			values[j] = it.Value
		}
		cmds = append(cmds, p.rc.B().Multi().Build(), p.rc.B().Rpush().Key(g.key).Element(values...).Build())
		if p.cfg.TTL > 0 {
			cmds = append(cmds, p.rc.B().Expire().Key(g.key).Seconds(p.cfg.TTL).Build())
		}
		for _, it := range g.items {
			cmds = append(cmds, p.rc.B().Lrem().Key(g.ackList).Count(1).Element(it.Ack).Build())
			if it.Keep != "" {
				cmds = append(cmds, p.rc.B().Set().Key(it.Keep).Value(it.Value).Px(it.KeepTTL).Build())
			}
		}
		execs[i] = len(cmds)
		cmds = append(cmds, p.rc.B().Exec().Build())
	}
	res := p.rc.DoMulti(ctx, cmds...)
	for i, g := range groups {
		// EXEC fails as a whole (a command refused when queued, as under
		// maxmemory), or gives each command's reply: the RPUSH's first.
		replies, err := res[execs[i]].ToArray()
		if err == nil && len(replies) > 0 {
			err = replies[0].Error()
		}
		p.done(g.items, err, true)
	}
}

// Err joins the failures among res, nil where every command succeeded.
func Err(res []rueidis.RedisResult) error {
	var errs []error
	for _, r := range res {
		if err := r.Error(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// allOK reports whether every result is a reply, not a failure to get one.
func allOK(res []rueidis.RedisResult) bool {
	for _, r := range res {
		if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
			if _, reply := rueidis.IsRedisErr(err); !reply {
				return false
			}
		}
	}
	return true
}

// markSent sets the Sent flags of items pushed.
func markSent(items []Item) {
	for _, it := range items {
		if it.Sent != nil {
			it.Sent.Store(true)
		}
	}
}

// writePlain pushes groups with RPUSH (and EXPIRE), then removes the
// requests they answer from their processing lists.
func (p *Pusher) writePlain(ctx context.Context, groups []group) {
	groups = p.keepFirst(ctx, groups)
	if len(groups) == 0 {
		return
	}
	cmds := p.cmds[:0]
	for _, g := range groups {
		values := p.values[:0]
		for _, it := range g.items {
			values = append(values, it.Value)
		}
		cmds = append(cmds, p.rc.B().Rpush().Key(g.key).Element(values...).Build()) // copies values
		clear(values)
		p.values = values[:0]
		if p.cfg.TTL > 0 {
			cmds = append(cmds, p.rc.B().Expire().Key(g.key).Seconds(p.cfg.TTL).Build())
		}
	}
	res := p.rc.DoMulti(ctx, cmds...)
	// The slice is kept for the next push only where Redis answered every
	// command: after a failure, rueidis may still be writing it out on the
	// connection it is tearing down.
	p.cmds = nil
	if allOK(res) {
		clear(cmds)
		p.cmds = cmds[:0]
	}
	step := 1
	if p.cfg.TTL > 0 {
		step = 2
	}
	var acks rueidis.Commands
	var acked []Item
	for i, g := range groups {
		err := res[i*step].Error()
		if err != nil {
			p.done(g.items, err, false)
			continue
		}
		p.done(g.items, nil, false)
		for _, it := range g.items {
			if it.Ack != "" {
				acks = append(acks, p.rc.B().Lrem().Key(it.AckList).Count(1).Element(it.Ack).Build())
				acked = append(acked, it)
			}
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

// keepFirst writes the kept answers of groups' items (Item.Keep) before
// their pushes, where they cannot go in one transaction, so that a request
// whose answer went out is answered from what was kept if it comes back
// before its removal. It returns the groups without the items whose answer
// could not be kept, which failed.
func (p *Pusher) keepFirst(ctx context.Context, groups []group) []group {
	var cmds rueidis.Commands
	for _, g := range groups {
		for _, it := range g.items {
			if it.Keep != "" {
				cmds = append(cmds, p.rc.B().Set().Key(it.Keep).Value(it.Value).Px(it.KeepTTL).Build())
			}
		}
	}
	if len(cmds) == 0 {
		return groups
	}
	res := p.rc.DoMulti(ctx, cmds...)
	out := groups[:0]
	i := 0
	for _, g := range groups {
		var kept, failed []Item
		var err error
		for _, it := range g.items {
			if it.Keep == "" {
				kept = append(kept, it)
				continue
			}
			if e := res[i].Error(); e != nil {
				failed, err = append(failed, it), e
			} else {
				kept = append(kept, it)
			}
			i++
		}
		if len(failed) > 0 {
			p.done(failed, err, true)
		}
		if len(kept) > 0 {
			g.items = kept
			out = append(out, g)
		}
	}
	return out
}

// done reports a group's push: on err, its items failed; with settled, their
// Acks are settled too (pushed, or not, with them).
func (p *Pusher) done(items []Item, err error, settled bool) {
	if err != nil && p.cfg.OnError != nil {
		p.cfg.OnError(items, err)
	}
	if err != nil {
		items = p.again(items) // those to try again are not settled
	} else {
		markSent(items)
		if p.backoff.Load() != 0 {
			p.backoff.Store(0)
		}
	}
	if settled || err != nil {
		for _, it := range items {
			p.settled(it)
		}
	}
	if err == nil && p.cfg.OnSent != nil {
		p.cfg.OnSent()
	}
}

func (p *Pusher) settled(it Item) {
	if it.Ack != "" && p.cfg.OnSettled != nil {
		p.cfg.OnSettled(it)
	}
}
