package lists

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

// pushExtendScript appends to a list that many parties share, a server's
// inbox, and gives it an expiry no shorter than the one it had: a short
// call must not expire the requests of longer ones. (EXPIRE's NX and GT
// options do the same from Redis 7 on.)
//
//	KEYS[1] the list; ARGV[1] the expiry in ms, ARGV[2...] the elements
var pushExtendScript = rueidis.NewLuaScript(`
redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
local ttl = redis.call('PTTL', KEYS[1])
if ttl >= 0 and ttl < tonumber(ARGV[1]) or ttl == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 1`)

// PushExtend appends values to the list key and makes it live at least ttl
// from now, extending its expiry, never shortening it.
func PushExtend(ctx context.Context, rc rueidis.Client, key string, ttl time.Duration, values ...string) error {
	args := append([]string{strconv.FormatInt(max(ttl.Milliseconds(), 1), 10)}, values...)
	return pushExtendScript.Exec(ctx, rc, []string{key}, args).Error()
}
