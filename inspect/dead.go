package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/internal/keys"
	"github.com/redisrpc/redisrpc/internal/registry"
	"github.com/redisrpc/redisrpc/internal/wire"
)

// DeadLetter is a request delivered as often as its servers allowed
// (WithMaxDeliveries), each server that took it having stopped before
// answering.
type DeadLetter struct {
	List       string // the request list it came from
	Index      int    // its place in that list's dead letters, newest first
	Request    string // the request as it was queued
	Function   string // of the request, where it decodes
	ID         string // of the request, where it has one
	Why        string
	Deliveries int
	At         time.Time // when it became a dead letter
	Server     string    // the last server that took it
}

// deadLetter is a dead letter as a server writes it.
type deadLetter struct {
	Request    string `json:"request"`
	Why        string `json:"why"`
	Deliveries int    `json:"deliveries"`
	At         int64  `json:"at"`
	Server     string `json:"server"`
}

// lists returns the request lists of queue, as Queue.Lists names them.
func lists(ctx context.Context, rc rueidis.Client, queue string) ([]string, error) {
	infos, err := registry.Live(ctx, rc, queue)
	if err != nil {
		return nil, err
	}
	return listNames(ctx, rc, queue, infos)
}

// DeadLetters returns queue's dead letters, on every list of the queue (see
// Queue), newest first within each list.
func DeadLetters(ctx context.Context, rc rueidis.Client, queue string) ([]DeadLetter, error) {
	names, err := lists(ctx, rc, queue)
	if err != nil {
		return nil, err
	}
	var out []DeadLetter
	for _, list := range names {
		raw, err := rc.Do(ctx, rc.B().Lrange().Key(keys.Dead(list)).Start(0).Stop(-1).Build()).AsStrSlice()
		if err != nil {
			return nil, err
		}
		for i, s := range raw {
			var d deadLetter
			if err := json.Unmarshal([]byte(s), &d); err != nil {
				continue
			}
			dl := DeadLetter{List: list, Index: i, Request: d.Request, Why: d.Why, Deliveries: d.Deliveries, At: time.UnixMilli(d.At), Server: d.Server}
			if req, err := wire.DecodeRequest(d.Request); err == nil {
				dl.Function, dl.ID = req.FunctionCall.Name, req.ID
			}
			out = append(out, dl)
		}
	}
	return out, nil
}

// requeueScript moves a dead letter's request back to the tail of its list,
// with its deliveries counted anew, and returns 1, or 0 where the dead
// letter is no longer there.
//
//	KEYS[1] the list, KEYS[2] its dead letters, KEYS[3] its deliveries;
//	ARGV[1] the dead letter, ARGV[2] its request
var requeueScript = rueidis.NewLuaScript(`
if redis.call('LREM', KEYS[2], 1, ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[3], redis.sha1hex(ARGV[2]))
redis.call('RPUSH', KEYS[1], ARGV[2])
return 1`)

// ErrGone is returned by Requeue for a dead letter that is no longer there.
var ErrGone = errors.New("inspect: the dead letter is gone")

// Requeue puts the request of dead letter d, from DeadLetters, back at the
// tail of its list, to be delivered again as often as when it was new.
func Requeue(ctx context.Context, rc rueidis.Client, d DeadLetter) error {
	raw, err := rc.Do(ctx, rc.B().Lindex().Key(keys.Dead(d.List)).Index(int64(d.Index)).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return ErrGone
	}
	if err != nil {
		return err
	}
	var cur deadLetter
	if json.Unmarshal([]byte(raw), &cur) != nil || cur.Request != d.Request || time.UnixMilli(cur.At) != d.At {
		return ErrGone // another took its place
	}
	n, err := requeueScript.Exec(ctx, rc, []string{d.List, keys.Dead(d.List), keys.Deliveries(d.List)}, []string{raw, d.Request}).AsInt64()
	if err == nil && n == 0 {
		err = ErrGone
	}
	return err
}

// Purge deletes queue's dead letters, on every list of the queue (see
// Queue), and returns how many there were.
func Purge(ctx context.Context, rc rueidis.Client, queue string) (int64, error) {
	names, err := lists(ctx, rc, queue)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, list := range names {
		n, err := rc.Do(ctx, rc.B().Llen().Key(keys.Dead(list)).Build()).AsInt64()
		if err != nil {
			return total, err
		}
		if err := rc.Do(ctx, rc.B().Del().Key(keys.Dead(list)).Build()).Error(); err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}
