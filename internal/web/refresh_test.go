package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/internal/keys"
	"github.com/redisrpc/redisrpc/internal/web"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

// slowRedis is a client each of whose round trips takes lag longer, as
// over a slow link or a busy Redis.
type slowRedis struct {
	rueidis.Client
	lag time.Duration
}

func (s slowRedis) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	time.Sleep(s.lag)
	return s.Client.Do(ctx, cmd)
}

func (s slowRedis) DoMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	time.Sleep(s.lag)
	return s.Client.DoMulti(ctx, cmds...)
}

// TestRefreshOfManyQueues: with a hundred queues in the index and 5 ms a
// round trip, a refresh reads them all within its budget (5 Refresh), and
// the page lists every one. Read one after the other, they took longer,
// and the page listed none (those read before the budget ran out, once, and
// the error).
func TestRefreshOfManyQueues(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := redisrpctest.Queue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	redisrpc.Handle(mux, redisrpc.NewEndpoint[int, int]("add"), func(_ context.Context, x int) (int, error) { return x + 1, nil })
	redisrpctest.Serve(t, mux)
	const others = 100
	now := float64(time.Now().UnixMilli())
	zadd := rc.B().Zadd().Key(keys.Services).ScoreMember()
	want := map[string]bool{q: true}
	for i := range others {
		name := fmt.Sprintf("%s:idle%d", q, i)
		zadd = zadd.ScoreMember(now, name)
		want[name] = true
	}
	if err := rc.Do(context.Background(), zadd.Build()).Error(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		zrem := rc.B().Zrem().Key(keys.Services).Member(fmt.Sprintf("%s:idle0", q))
		for i := 1; i < others; i++ {
			zrem = zrem.Member(fmt.Sprintf("%s:idle%d", q, i))
		}
		rc.Do(context.Background(), zrem.Build())
	})
	url := dashboard(t, slowRedis{rc, 5 * time.Millisecond})
	var st web.State
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(web.Refresh) {
		resp, err := http.Get(url + "/api/state")
		if err != nil {
			t.Fatal(err)
		}
		st = web.State{}
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		found := 0
		for _, svc := range st.Services {
			if want[svc.Queue] {
				found++
			}
		}
		if found == len(want) { // st.Error may name other tests' queues, broken on purpose
			return
		}
	}
	found := 0
	for _, svc := range st.Services {
		if want[svc.Queue] {
			found++
		}
	}
	t.Fatalf("the page lists %d of the %d queues, error %q", found, len(want), st.Error)
}
