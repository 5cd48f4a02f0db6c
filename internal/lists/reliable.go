package lists

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// Keys of at-least-once delivery for a request queue, all in the queue's hash
// slot so that the scripts below work on Redis Cluster:
//
//	<tag>:processing:<server>  list: requests a server has taken and not answered
//	<tag>:alive:<server>       string with a TTL: the server's heartbeat
//	<tag>:servers              set: servers that may hold requests
//
// where <tag> is the queue itself when it has a hash tag, else {queue}.

// SlotTag returns the prefix that puts a key in queue's hash slot.
func SlotTag(queue string) string {
	if open := strings.IndexByte(queue, '{'); open >= 0 {
		if end := strings.IndexByte(queue[open+1:], '}'); end > 0 {
			return queue // a non-empty tag: keys starting with queue share it
		}
	}
	return "{" + queue + "}"
}

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

// recoverScript puts the requests of a server whose heartbeat has expired
// back at the head of the queue, oldest first, and forgets the server. It does
// nothing and returns -1 while the heartbeat exists.
//
//	KEYS[1] request queue, KEYS[2] the server's processing list,
//	KEYS[3] its heartbeat, KEYS[4] the servers set; ARGV[1] its id
var recoverScript = rueidis.NewLuaScript(`
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
local n = 0
while true do
  local v = redis.call('LMOVE', KEYS[2], KEYS[1], 'RIGHT', 'LEFT')
  if not v then break end
  n = n + 1
end
redis.call('SREM', KEYS[4], ARGV[1])
return n`)

// Reliable takes requests for one server so that none is lost if it dies:
// each request stays in the server's processing list until acknowledged, and
// live servers give back the requests of servers whose heartbeat expired.
type Reliable struct {
	rc                                 rueidis.Client
	queue, id                          string
	tag, processing, alive, serversKey string
	ttl                                time.Duration
}

// NewReliable returns the at-least-once consumer id of queue, whose heartbeat
// lives for ttl.
func NewReliable(rc rueidis.Client, queue, id string, ttl time.Duration) *Reliable {
	tag := SlotTag(queue)
	return &Reliable{
		rc: rc, queue: queue, id: id, tag: tag, ttl: ttl,
		processing: tag + ":processing:" + id,
		alive:      tag + ":alive:" + id,
		serversKey: tag + ":servers",
	}
}

// Processing is the name of the server's processing list, where Ack removes from.
func (r *Reliable) Processing() string { return r.processing }

// Pop moves up to max requests to the processing list, waiting up to timeout
// for the first. Like Popper.Pop it must not be cancelled while it waits; what
// it moved is safe in the processing list even if its reply is lost.
func (r *Reliable) Pop(ctx context.Context, timeout time.Duration, max int) ([]string, error) {
	first, err := r.rc.Do(ctx, r.rc.B().Blmove().Source(r.queue).Destination(r.processing).Left().Right().Timeout(timeout.Seconds()).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	msgs := []string{first}
	if max > 1 {
		more, err := moveScript.Exec(ctx, r.rc, []string{r.queue, r.processing}, []string{strconv.Itoa(max - 1)}).AsStrSlice()
		if err == nil {
			msgs = append(msgs, more...)
		}
	}
	return msgs, nil
}

// Ack removes a request from the processing list once it is answered or dropped.
func (r *Reliable) Ack(ctx context.Context, msg string) error {
	return r.rc.Do(ctx, r.rc.B().Lrem().Key(r.processing).Count(1).Element(msg).Build()).Error()
}

// Beat renews the heartbeat and registers the server.
func (r *Reliable) Beat(ctx context.Context) error {
	for _, res := range r.rc.DoMulti(ctx,
		r.rc.B().Set().Key(r.alive).Value("1").Px(r.ttl).Build(),
		r.rc.B().Sadd().Key(r.serversKey).Member(r.id).Build(),
	) {
		if err := res.Error(); err != nil {
			return err
		}
	}
	return nil
}

// Rescue gives back the requests of every server whose heartbeat expired and
// returns how many it put back on the queue.
func (r *Reliable) Rescue(ctx context.Context) (int64, error) {
	ids, err := r.rc.Do(ctx, r.rc.B().Smembers().Key(r.serversKey).Build()).AsStrSlice()
	if err != nil {
		return 0, err
	}
	var total int64
	for _, id := range ids {
		if id == r.id {
			continue
		}
		n, err := recoverScript.Exec(ctx, r.rc,
			[]string{r.queue, r.tag + ":processing:" + id, r.tag + ":alive:" + id, r.serversKey},
			[]string{id}).AsInt64()
		if err != nil {
			return total, err
		}
		total += max(n, 0)
	}
	return total, nil
}

// Leave ends the heartbeat and gives back what is still in the processing
// list, for a server that stops with nothing in flight.
func (r *Reliable) Leave(ctx context.Context) error {
	if err := r.rc.Do(ctx, r.rc.B().Del().Key(r.alive).Build()).Error(); err != nil {
		return err
	}
	return recoverScript.Exec(ctx, r.rc,
		[]string{r.queue, r.processing, r.alive, r.serversKey}, []string{r.id}).Error()
}
