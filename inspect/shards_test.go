package inspect_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc/inspect"
	"github.com/redisrpc/redisrpc/internal/keys"
	"github.com/redisrpc/redisrpc/internal/registry"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

// TestShardsWithoutServer: with no server live, the depth and the dead
// letters of every list of a shard count that servers recorded at their
// beats are seen, and Purge deletes those dead letters.
func TestShardsWithoutServer(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := redisrpctest.Queue(t)
	ctx := timeout(t, 5*time.Second)
	// Servers WithShards(3) served q, and have all stopped.
	if err := registry.RecordShards(ctx, rc, q, 3); err != nil {
		t.Fatal(err)
	}
	shards := keys.Shards(q, 3)
	for i, list := range shards {
		req := fmt.Sprintf(`{"function_call":{"name":"add","args":[%d]},"response_queue":"%s:rpc:X","id":"%d"}`, i, q, i)
		if err := rc.Do(ctx, rc.B().Rpush().Key(list).Element(req).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	entry, _ := json.Marshal(map[string]any{"request": `{"function_call":{"name":"add","args":[9]},"id":"9"}`,
		"why": "delivered too often", "deliveries": 3, "at": time.Now().UnixMilli(), "server": "S1"})
	if err := rc.Do(ctx, rc.B().Lpush().Key(keys.Dead(shards[2])).Element(string(entry)).Build()).Error(); err != nil {
		t.Fatal(err)
	}

	got, err := inspect.Inspect(ctx, rc, q)
	if err != nil {
		t.Fatal(err)
	}
	if got.Depth != 3 || len(got.Lists) != 3 || len(got.Servers) != 0 {
		t.Errorf("Inspect: got depth %d over %d lists, %d servers; want 3 over 3, none", got.Depth, len(got.Lists), len(got.Servers))
	}
	dead, err := inspect.DeadLetters(ctx, rc, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].List != shards[2] || dead[0].ID != "9" {
		t.Errorf("DeadLetters: got %+v, want the one on %s", dead, shards[2])
	}
	if n, err := inspect.Purge(ctx, rc, q); err != nil || n != 1 {
		t.Errorf("Purge: got %d, %v; want 1", n, err)
	}
	if n, _ := rc.Do(ctx, rc.B().Llen().Key(keys.Dead(shards[2])).Build()).AsInt64(); n != 0 {
		t.Errorf("dead letters on %s after Purge: got %d, want 0", shards[2], n)
	}
}
