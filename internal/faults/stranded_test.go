package faults_test

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/internal/keys"
	"github.com/redisrpc/redisrpc/internal/lists"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

// serverID returns the id of the one server holding a lease on list.
func serverID(t *testing.T, c rueidis.Client, list string) string {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		ids, err := c.Do(context.Background(), c.B().Zrange().Key(keys.Leases(list)).Min("0").Max("-1").Build()).AsStrSlice()
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) == 1 {
			return ids[0]
		}
	}
	t.Fatalf("no single server holds a lease on %s", list)
	return ""
}

// waitResponse waits up to d for the response pushed to list and returns it.
func waitResponse(t *testing.T, c rueidis.Client, list string, d time.Duration) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	kv, err := c.Do(context.Background(), c.B().Blpop().Key(list).Timeout(d.Seconds()).Build()).AsStrSlice()
	if rueidis.IsRedisNil(err) {
		return "", time.Since(start)
	}
	if err != nil {
		t.Fatal(err)
	}
	return kv[1], time.Since(start)
}

// TestStrandedRequestRecovered: a request in a live server's processing list
// that the server does not hold, as when the reply of the pop that moved it
// was lost, is given back and served within a bounded time, while a request
// its handler holds for longer than that runs once.
func TestStrandedRequestRecovered(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	var runs atomic.Int64
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithAtLeastOnce(), redisrpc.WithHeartbeat(300*time.Millisecond))
	redisrpc.Handle(mux, Slow, func(ctx context.Context, ms int) (int, error) {
		if ms > 1000 {
			runs.Add(1)
		}
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return ms, nil
	})
	redisrpctest.Serve(t, mux)
	id := serverID(t, rc, q)

	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
	defer c.Close()
	long := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := redisrpc.Call(ctx, c, Slow, int(lists.MaxPopWait/time.Millisecond)+2000) // held past the threshold
		long <- err
	}()

	reply := q + ":rpc:stranded"
	body := fmt.Sprintf(`{"function_call":{"name":"slow","args":[5]},"response_queue":%q,"id":"s1"}`, reply)
	if err := rc.Do(context.Background(), rc.B().Rpush().Key(keys.Processing(q, id)).Element(body).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	resp, took := waitResponse(t, rc, reply, 15*time.Second)
	if resp != `{"id":"s1","return_value":5}` {
		t.Fatalf("the stranded request: got response %q after %v, want its answer", resp, took)
	}
	t.Logf("a stranded request was answered %v after it landed in the processing list", took.Round(time.Millisecond))
	if err := <-long; err != nil {
		t.Fatalf("the long call: %v", err)
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("runs of the request its handler held for %v: got %d, want 1", lists.MaxPopWait+2*time.Second, n)
	}
}

// TestResponsePushFails: when Redis refuses the responses (out of memory)
// for a while, the requests stay in the processing list, held, and their
// answers are pushed again until Redis takes writes: each request runs
// once, with the server alive all along.
func TestResponsePushFails(t *testing.T) {
	t.Parallel()
	port, kill := ownRedis(t, 0)
	defer kill()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{fmt.Sprintf("127.0.0.1:%d", port)}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := newQueue(t)
	var runs atomic.Int64
	mux := redisrpc.NewMux(c, q, redisrpc.WithLogger(quiet), redisrpc.WithAtLeastOnce(), redisrpc.WithHeartbeat(300*time.Millisecond))
	redisrpc.Handle(mux, Slow, func(ctx context.Context, ms int) (int, error) {
		runs.Add(1)
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return ms, nil
	})
	redisrpctest.Serve(t, mux)
	client := redisrpc.NewClient(c, q, redisrpc.WithLogger(quiet))
	defer client.Close()
	config := func(args ...string) {
		if err := c.Do(context.Background(), c.B().ConfigSet().ParameterValue().ParameterValue(args[0], args[1]).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	config("maxmemory-policy", "noeviction")
	results := make(chan error, 2)
	start := time.Now()
	for range 2 {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := redisrpc.Call(ctx, client, Slow, 300)
			results <- err
		}()
	}
	time.Sleep(100 * time.Millisecond) // both handlers run
	config("maxmemory", "1")
	time.Sleep(1700 * time.Millisecond)
	config("maxmemory", "0")
	for range 2 {
		if err := <-results; err != nil {
			t.Errorf("a call whose response Redis refused: %v", err)
		}
	}
	t.Logf("both calls answered %v after they began, after %d runs", time.Since(start).Round(time.Millisecond), runs.Load())
	if runs.Load() != 2 {
		t.Errorf("runs: got %d, want 2 (each request once, its answer pushed again)", runs.Load())
	}
}

// TestOrphanedProcessingList: a server stops beating, a live one gives its
// requests back, then a pop the silent server had sent before it stopped
// moves a request into its processing list, and the server dies. The live
// server gives that request back too, and forgets the dead one only after
// lists.LeaseGrace.
func TestOrphanedProcessingList(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	serve(t, rc, q, redisrpc.WithAtLeastOnce(), redisrpc.WithHeartbeat(300*time.Millisecond))
	ctx := context.Background()
	now := func() int64 {
		tm, err := rc.Do(ctx, rc.B().Time().Build()).AsStrSlice()
		if err != nil {
			t.Fatal(err)
		}
		s, _ := strconv.ParseInt(tm[0], 10, 64)
		us, _ := strconv.ParseInt(tm[1], 10, 64)
		return s*1000 + us/1000
	}
	// Server "dead" beat last now, with a 300ms lease.
	start := now()
	if err := rc.Do(ctx, rc.B().Zadd().Key(keys.Leases(q)).ScoreMember().ScoreMember(float64(start+300), "dead").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // its lease ran out; the live server has looked at it
	reply := q + ":rpc:orphan"
	body := fmt.Sprintf(`{"function_call":{"name":"slow","args":[3]},"response_queue":%q,"id":"o1"}`, reply)
	if err := rc.Do(ctx, rc.B().Rpush().Key(keys.Processing(q, "dead")).Element(body).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	resp, took := waitResponse(t, rc, reply, 10*time.Second)
	if resp != `{"id":"o1","return_value":3}` {
		t.Fatalf("the request left by the dead server: got %q after %v, want its answer", resp, took)
	}
	t.Logf("the request a dead server's late pop moved was answered after %v", took.Round(time.Millisecond))
	for rc.Do(ctx, rc.B().Zscore().Key(keys.Leases(q)).Member("dead").Build()).Error() == nil {
		if time.Duration(now()-start)*time.Millisecond > lists.LeaseGrace+5*time.Second {
			t.Fatal("the dead server is still in the lease set long after its grace")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if forgotten := time.Duration(now()-start-300) * time.Millisecond; forgotten < lists.LeaseGrace {
		t.Errorf("the dead server was forgotten %v after its lease ran out, want at least %v", forgotten, lists.LeaseGrace)
	}
}

// TestBeatPastErrors: a failure on one shard's lease does not stop the
// server renewing its leases on the others, where it would otherwise be
// taken for dead.
func TestBeatPastErrors(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	shards := keys.Shards(q, 3)
	ctx := context.Background()
	// Shard 1's lease set is not a sorted set: renewing it fails.
	if err := rc.Do(ctx, rc.B().Set().Key(keys.Leases(shards[1])).Value("x").Ex(time.Minute).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	h := &countingHandler{Handler: quiet.Handler()}
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(slog.New(h)), redisrpc.WithShards(3), redisrpc.WithAtLeastOnce(), redisrpc.WithHeartbeat(300*time.Millisecond))
	redisrpctest.Serve(t, mux)
	time.Sleep(500 * time.Millisecond)
	if h.errors.Load() == 0 {
		t.Fatal("no heartbeat error logged: the test did not break shard 1")
	}
	id := serverID(t, rc, shards[0])
	for _, list := range []string{shards[0], shards[2]} {
		until, err := rc.Do(ctx, rc.B().Zscore().Key(keys.Leases(list)).Member(id).Build()).AsFloat64()
		if err != nil || int64(until) < time.Now().UnixMilli() {
			t.Errorf("the server's lease on %s: got %v, %v; want one running", list, until, err)
		}
	}
}
