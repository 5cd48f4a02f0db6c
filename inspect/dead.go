package inspect

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/internal/keys"
	rlists "github.com/redisrpc/redisrpc/internal/lists"
	"github.com/redisrpc/redisrpc/internal/registry"
	"github.com/redisrpc/redisrpc/internal/wire"
)

// DeadLetter is a request delivered as often as its servers allowed
// (WithMaxDeliveries), each server that took it having stopped before
// answering.
type DeadLetter struct {
	// Ref names this dead letter, for as long as it is one: the first 12
	// hex digits of the SHA-1 of the dead letter as stored, which only a
	// dead letter of the same bytes shares.
	Ref        string
	List       string // the request list it came from
	Request    string // the request as it was queued
	Function   string // of the request, where it decodes
	ID         string // of the request, where it has one
	Why        string
	Deliveries int
	At         time.Time // when it became a dead letter
	Server     string    // the last server that took it
	// Answered says that its caller may have been told it failed: when a
	// request becomes a dead letter, its server answers the caller with
	// CodeInternal where the request names a response queue of the queue
	// and its deadline has not passed. Such a caller may have undone what
	// it did for the call; requeuing runs the request again all the same,
	// so Requeue refuses it unless given WithAnswered.
	Answered bool

	stored string // the dead letter as stored, JSON
}

// deadLetter is a dead letter as a server writes it.
type deadLetter struct {
	Request    string `json:"request"`
	Why        string `json:"why"`
	Deliveries int    `json:"deliveries"`
	At         int64  `json:"at"`
	Server     string `json:"server"`
	Answered   *bool  `json:"answered"` // nil where written before servers marked it
}

// clockLag is how far behind Redis' clock the server that answers a dead
// letter's caller may run: the servers' script marks answered the dead
// letters whose deadline had not passed this long before, by Redis' clock.
const clockLag = 5 * time.Second

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
		for _, s := range raw {
			var d deadLetter
			if err := json.Unmarshal([]byte(s), &d); err != nil {
				continue
			}
			sum := sha1.Sum([]byte(s))
			dl := DeadLetter{Ref: hex.EncodeToString(sum[:6]), List: list, Request: d.Request, Why: d.Why, Deliveries: d.Deliveries,
				At: time.UnixMilli(d.At), Server: d.Server, stored: s}
			if req, err := wire.DecodeRequest(d.Request); err == nil {
				dl.Function, dl.ID, dl.Answered = req.FunctionCall.Name, req.ID, answered(queue, d, req)
			}
			out = append(out, dl)
		}
	}
	return out, nil
}

// answered says whether the server answered the caller of d, a dead letter
// of queue, whose request decodes as req: the servers' mark, which errs
// towards true, narrowed with what only a reader that knows the queue can
// check; for dead letters written before servers marked them, the servers'
// rule (Server.answerDead) at the time it became one.
func answered(queue string, d deadLetter, req wire.Request) bool {
	if !wire.ValidResponseQueue(queue, req.ResponseQueue) {
		return false
	}
	if d.Answered != nil {
		return *d.Answered
	}
	return req.Deadline == 0 || req.Deadline > d.At-clockLag.Milliseconds()
}

// requeueScript moves a dead letter's request back to the tail of its list,
// with its deliveries counted anew, and returns 1, or 0 where the dead
// letter is no longer there, or 2, doing nothing, where the servers kept an
// answer to it (WithDedupe): its caller was answered, and the request would
// not run.
//
//	KEYS[1] the list, KEYS[2] its dead letters, KEYS[3] its deliveries;
//	ARGV[1] the dead letter, ARGV[2] its request, ARGV[3] the prefix of the
//	list's kept answers
var requeueScript = rueidis.NewLuaScript(rlists.KeptLua + `
if kept(ARGV[3], ARGV[2]) then return 2 end
if redis.call('LREM', KEYS[2], 1, ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[3], redis.sha1hex(ARGV[2]))
redis.call('RPUSH', KEYS[1], ARGV[2])
return 1`)

// ErrGone is returned by Requeue for a dead letter that is no longer there:
// requeued or purged since it was read.
var ErrGone = errors.New("inspect: the dead letter is gone")

// ErrAnswered is returned by Requeue, without WithAnswered, for a dead
// letter whose caller may have been told it failed (DeadLetter.Answered).
var ErrAnswered = errors.New("inspect: the dead letter's caller was told it failed; requeuing runs it again")

// ErrKept is returned by Requeue, with or without WithAnswered, for a dead
// letter whose servers keep answers (WithDedupe) and kept one for it: its
// caller was answered, and the request, requeued, would be answered from
// what was kept, not run. It can be requeued once the answer expires.
var ErrKept = errors.New("inspect: the servers kept an answer to the dead letter's request (WithDedupe): its caller was answered, and requeued it would not run")

// RequeueOption is an option of Requeue.
type RequeueOption func(*requeueConfig)

type requeueConfig struct{ answered bool }

// WithAnswered lets Requeue requeue a dead letter whose caller may have been
// told it failed (DeadLetter.Answered): the request runs again although its
// caller may have undone what it did. By default Requeue refuses one with
// ErrAnswered.
func WithAnswered() RequeueOption { return func(c *requeueConfig) { c.answered = true } }

// Requeue puts the request of dead letter d, from DeadLetters, back at the
// tail of its list, to be delivered again as often as when it was new. It
// acts on d alone, wherever d now lies among the dead letters, and returns
// ErrGone where d is no longer one, ErrAnswered where d.Answered and not
// WithAnswered, and ErrKept where the servers kept an answer to it. It is
// safe for concurrent use: of two requeues of the same dead letter, one
// returns ErrGone.
func Requeue(ctx context.Context, rc rueidis.Client, d DeadLetter, opts ...RequeueOption) error {
	var c requeueConfig
	for _, o := range opts {
		o(&c)
	}
	if d.stored == "" {
		return errors.New("inspect: Requeue takes a dead letter that DeadLetters returned")
	}
	if d.Answered && !c.answered {
		return ErrAnswered
	}
	n, err := requeueScript.Exec(ctx, rc, []string{d.List, keys.Dead(d.List), keys.Deliveries(d.List)},
		[]string{d.stored, d.Request, keys.AnsweredPrefix(d.List)}).AsInt64()
	switch {
	case err != nil:
		return err
	case n == 0:
		return ErrGone
	case n == 2:
		return ErrKept
	}
	return nil
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
