package inspect_test

import (
	"testing"
	"time"

	"github.com/redisrpc/redisrpc/inspect"
	"github.com/redisrpc/redisrpc/internal/keys"
	"github.com/redisrpc/redisrpc/internal/localredis"
)

// TestServicesWithABrokenQueue: a queue whose key Redis refuses to read (a
// lease set that is a string) is listed with its error, and hides no other
// queue from Services. On a Redis of its own, whose keys it breaks.
func TestServicesWithABrokenQueue(t *testing.T) {
	t.Parallel()
	srv, rc, err := localredis.StartWithClient(localredis.Embedded)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	defer rc.Close()
	ctx := timeout(t, 5*time.Second)
	now := float64(time.Now().UnixMilli())
	for _, q := range []string{"broken", "sound"} {
		if err := rc.Do(ctx, rc.B().Zadd().Key(keys.Services).ScoreMember().ScoreMember(now, q).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rc.Do(ctx, rc.B().Set().Key(keys.Leases("broken")).Value("x").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := rc.Do(ctx, rc.B().Rpush().Key("sound").Element(`{"function_call":{"name":"f"}}`).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	got, err := inspect.Services(ctx, rc)
	if err != nil || len(got) != 2 {
		t.Fatalf("Services: got %+v, %v; want both queues", got, err)
	}
	if got[0].Queue != "broken" || got[0].Err == nil {
		t.Errorf("the broken queue: got %+v, want it listed with its error", got[0])
	}
	if got[1].Queue != "sound" || got[1].Err != nil || got[1].Depth != 1 {
		t.Errorf("the sound queue: got %+v, want depth 1 and no error", got[1])
	}
}
