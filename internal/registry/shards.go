package registry

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/internal/keys"
)

// RecordShards records that queue is served spread over shards lists, for
// a server to call at each beat: tools then find the lists of every count
// ever served, and what waits or lies dead on them, while no server is live.
// It writes one ZADD to keys.ShardCounts(queue), or nothing for shards <= 1,
// whose only list is the queue. It is safe for concurrent use.
func RecordShards(ctx context.Context, rc rueidis.Client, queue string, shards int) error {
	n := min(shards, keys.MaxShards)
	if n <= 1 {
		return nil
	}
	return rc.Do(ctx, rc.B().Zadd().Key(keys.ShardCounts(queue)).ScoreMember().
		ScoreMember(float64(time.Now().UnixMilli()), strconv.Itoa(n)).Build()).Error()
}

// ShardCounts returns the shard counts recorded for queue by RecordShards,
// ascending; none where no sharded server has served it.
func ShardCounts(ctx context.Context, rc rueidis.Client, queue string) ([]int, error) {
	members, err := rc.Do(ctx, rc.B().Zrange().Key(keys.ShardCounts(queue)).Min("0").Max("-1").Build()).AsStrSlice()
	if err != nil {
		return nil, err
	}
	var out []int
	for _, m := range members {
		if n, err := strconv.Atoi(m); err == nil && n > 1 {
			out = append(out, min(n, keys.MaxShards))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
