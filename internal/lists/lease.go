package lists

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/internal/keys"
)

// LeaseGrace is how long a server whose lease ran out stays in a list's
// lease set, so that live servers keep giving back what lands in its
// processing list after it stopped: a pop it sent before it stalled or died
// can still move a request there for as long as the pop waits (at most a
// second) and its command travels. It is far longer than either.
const LeaseGrace = 10 * time.Second

// renewScript renews a server's lease on a list, returns whether the lease
// had run out before this renewal (others may have given its requests back),
// and the ids of the servers whose leases have run out. The lease set has no
// expiry while servers hold leases: it is how the processing lists of
// servers that died are found.
//
//	KEYS[1] the list's lease set; ARGV[1] server id, ARGV[2] lease in ms
var renewScript = rueidis.NewLuaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PERSIST', KEYS[1])
local lapsed = 0
if old and tonumber(old) <= now then lapsed = 1 end
local out = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 100)
table.insert(out, 1, lapsed)
return out`)

// KeptLua is Lua that defines kept(prefix, msg): whether an answer to the
// request msg is kept under prefix (keys.AnsweredPrefix of its list), the
// key built as keys.Answered builds it, and the request decoded; false for
// prefix "" and for msg that is no request.
const KeptLua = `
local function kept(prefix, msg)
  if prefix == '' then return false end
  local ok, req = pcall(cjson.decode, msg)
  if not ok or type(req) ~= 'table' then return false end
  local rq, id = req['response_queue'], req['id']
  if type(rq) ~= 'string' then return false end
  if type(id) ~= 'string' then id = '' end
  return redis.call('EXISTS', prefix .. #rq .. ':' .. rq .. id) == 1, req
end
`

// redeliver is Lua that scripts which give requests back share: it puts msg
// back at the head of the list, or, once it was delivered max times, into the
// dead letters, capped at cap, and then reports false. Where the list's
// servers keep answers (WithDedupe: prefix is keys.AnsweredPrefix) and one
// is kept for msg, msg was answered: it goes back, uncounted, as a request
// sent again (with an attempt member of 2 in front, unless its own is 2 or
// more), so that the server that takes it answers it from what was
// kept, its caller having its answer even where the server that answered
// died before pushing it, and does not run it. Deliveries are counted by
// the SHA-1 of the request, in a hash that expires a day after the last.
//
// A dead letter's answered member says whether its caller may have been told
// it failed: the server answers the callers of new dead letters that name a
// valid response queue and whose deadline has not passed (Server.answerDead).
// The mark errs towards true: it asks for a response queue in any queue's
// namespace (the script does not know the queue), allows the server's clock
// to lag Redis' by 5 s, and marks a request it cannot decode; readers that
// know the queue narrow it (inspect.DeadLetters).
const redeliver = KeptLua + `
local function answered(msg, now)
  local ok, req = pcall(cjson.decode, msg)
  if not ok then return true end
  if type(req) ~= 'table' then return false end
  local rq = req['response_queue']
  if type(rq) ~= 'string' or not string.find(rq, ':rpc:', 1, true) then return false end
  local deadline = req['deadline']
  return type(deadline) ~= 'number' or deadline == 0 or deadline > now - 5000
end
local function redeliver(list, deliveries, dead, msg, max, cap, why, server, now, prefix)
  local h = redis.sha1hex(msg)
  local answered_, req = kept(prefix, msg)
  if answered_ then
    redis.call('HDEL', deliveries, h)
    local a = req['attempt']
    if type(a) ~= 'number' or a < 2 then msg = (string.gsub(msg, '^%s*{', '{"attempt":2,', 1)) end
    redis.call('LPUSH', list, msg)
    return true
  end
  local n = redis.call('HINCRBY', deliveries, h, 1)
  redis.call('PEXPIRE', deliveries, 86400000)
  if n >= max then
    redis.call('HDEL', deliveries, h)
    redis.call('LPUSH', dead, cjson.encode({request = msg, why = why, deliveries = n, at = now, server = server,
      answered = answered(msg, now)}))
    redis.call('LTRIM', dead, 0, cap - 1)
    return false
  end
  redis.call('LPUSH', list, msg)
  return true
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// rescueScript puts the requests of a server whose lease has run out back
// at the head of the list, oldest first (see redeliver), and forgets the
// server once its lease has been out for longer than ARGV[2]. It returns how
// many it put back, or -1 while the lease is live, then the requests it made
// dead letters.
//
//	KEYS[1] the list, KEYS[2] the server's processing list, KEYS[3] the
//	lease set, KEYS[4] the deliveries, KEYS[5] the dead letters; ARGV[1]
//	the server's id, ARGV[2] grace in ms, ARGV[3] deliveries at most,
//	ARGV[4] the dead letters' cap, ARGV[5] why a request is a dead letter,
//	ARGV[6] the prefix of kept answers, or ""
var rescueScript = rueidis.NewLuaScript(redeliver + `
local until_ = redis.call('ZSCORE', KEYS[3], ARGV[1])
if until_ and tonumber(until_) > now then return {-1} end
local out = {0}
while true do
  local msg = redis.call('RPOP', KEYS[2])
  if not msg then break end
  if redeliver(KEYS[1], KEYS[4], KEYS[5], msg, tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[1], now, ARGV[6]) then
    out[1] = out[1] + 1
  else
    table.insert(out, msg)
  end
end
if not until_ or tonumber(until_) + tonumber(ARGV[2]) <= now then
  redis.call('ZREM', KEYS[3], ARGV[1])
end
return out`)

// strandedScript gives back requests of a server's own processing list that
// nothing of it holds, as rescueScript does: each still there goes back to
// the head of the list, keeping their order, or to the dead letters. It
// returns how many it put back, then the dead letters.
//
//	KEYS as rescueScript's, but the lease set; ARGV[1] the server's id,
//	ARGV[2] deliveries at most, ARGV[3] the cap, ARGV[4] why, ARGV[5] the
//	prefix of kept answers, or ""; ARGV[6...] the requests, oldest first
var strandedScript = rueidis.NewLuaScript(redeliver + `
local out = {0}
for i = #ARGV, 6, -1 do
  if redis.call('LREM', KEYS[2], 1, ARGV[i]) == 1 then
    if redeliver(KEYS[1], KEYS[3], KEYS[4], ARGV[i], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[1], now, ARGV[5]) then
      out[1] = out[1] + 1
    else
      table.insert(out, ARGV[i])
    end
  end
end
return out`)

// leaveScript gives back a leaving server's requests, as rescueScript does,
// and ends its lease: with ARGV[2] = 1 it keeps the server in the lease set
// with a lease that has run out, so that others give back what a pop it
// abandoned may still move into its processing list, and gives the set an
// expiry of twice ARGV[3] where no other server is in it; else it removes
// the server.
//
//	KEYS[1] the list, KEYS[2] the server's processing list, KEYS[3] the
//	lease set; ARGV[1] the server's id, ARGV[2] 1 to keep it, ARGV[3]
//	grace in ms
var leaveScript = rueidis.NewLuaScript(`
local n = 0
while redis.call('LMOVE', KEYS[2], KEYS[1], 'RIGHT', 'LEFT') do n = n + 1 end
if ARGV[2] == '1' then
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[3], 'XX', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[1])
  if redis.call('ZCARD', KEYS[3]) == 1 then
    redis.call('PEXPIRE', KEYS[3], 2 * tonumber(ARGV[3]))
  end
else
  redis.call('ZREM', KEYS[3], ARGV[1])
end
return n`)

// giveBackScript moves each given request that is still in a processing
// list back to the head of its list, keeping their order, and returns how
// many it moved.
//
//	KEYS[1] the list, KEYS[2] the processing list; ARGV the requests,
//	oldest first
var giveBackScript = rueidis.NewLuaScript(`
local n = 0
for i = #ARGV, 1, -1 do
  if redis.call('LREM', KEYS[2], 1, ARGV[i]) == 1 then
    redis.call('LPUSH', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n`)

// renew renews id's lease on list for ttl. It reports whether the lease had
// run out before, and returns the servers whose leases have.
func renew(ctx context.Context, rc rueidis.Client, leases, id string, ttl time.Duration) (lapsed bool, expired []string, err error) {
	vs, err := renewScript.Exec(ctx, rc, []string{leases}, []string{id, strconv.FormatInt(ttl.Milliseconds(), 10)}).ToArray()
	if err != nil {
		return false, nil, err
	}
	if len(vs) == 0 {
		return false, nil, nil
	}
	n, _ := vs[0].AsInt64()
	for _, v := range vs[1:] {
		if s, err := v.ToString(); err == nil && s != id {
			expired = append(expired, s)
		}
	}
	return n == 1, expired, nil
}

// Redelivery says when a request given back becomes a dead letter.
type Redelivery struct {
	Max    int  // deliveries at most; 0 for no limit
	Cap    int  // dead letters kept
	Dedupe bool // the servers keep answers: a request answered is not given back
}

// whyDead is the reason written in every dead letter.
const whyDead = "delivered as often as allowed (WithMaxDeliveries), and each server that took it stopped before answering"

func (d Redelivery) args(list string) []string {
	limit := d.Max
	if limit <= 0 {
		limit = 1 << 30
	}
	prefix := ""
	if d.Dedupe {
		prefix = keys.AnsweredPrefix(list)
	}
	return []string{strconv.Itoa(limit), strconv.Itoa(max(d.Cap, 1)), whyDead, prefix}
}

// rescue gives back the requests of the server id whose lease ran out and
// returns how many it put back and those that became dead letters.
func rescue(ctx context.Context, rc rueidis.Client, list, processing, leases, id string, d Redelivery) (int64, []string, error) {
	args := append([]string{id, strconv.FormatInt(LeaseGrace.Milliseconds(), 10)}, d.args(list)...)
	vs, err := rescueScript.Exec(ctx, rc, []string{list, processing, leases, keys.Deliveries(list), keys.Dead(list)}, args).ToArray()
	return counted(vs, err)
}

// counted reads the reply of rescueScript or strandedScript.
func counted(vs []rueidis.RedisMessage, err error) (int64, []string, error) {
	if err != nil || len(vs) == 0 {
		return 0, nil, err
	}
	n, _ := vs[0].AsInt64()
	var dead []string
	for _, v := range vs[1:] {
		if s, err := v.ToString(); err == nil {
			dead = append(dead, s)
		}
	}
	return max(n, 0), dead, nil
}
