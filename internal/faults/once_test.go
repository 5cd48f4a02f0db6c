package faults_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/inspect"
	"github.com/redisrpc/redisrpc/internal/keys"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

// Once records each run of its request, for the tests of WithDedupe.
var Once = redisrpc.NewEndpoint[int, int]("once")

// runCounter counts the runs of each request of Once.
type runCounter struct {
	mu   sync.Mutex
	runs map[int]int
}

func (r *runCounter) handle(ctx context.Context, n int) (int, error) {
	r.mu.Lock()
	if r.runs == nil {
		r.runs = map[int]int{}
	}
	r.runs[n]++
	r.mu.Unlock()
	time.Sleep(5 * time.Millisecond)
	return n, nil
}

// serveOnce serves Once on q over c with opts (and a quiet logger) until
// the test ends, and returns the count of its runs.
func serveOnce(t *testing.T, c rueidis.Client, q string, opts ...redisrpc.MuxOption) *runCounter {
	t.Helper()
	runs := &runCounter{}
	mux := redisrpc.NewMux(c, q, append([]redisrpc.MuxOption{redisrpc.WithLogger(quiet)}, opts...)...)
	redisrpc.Handle(mux, Once, runs.handle)
	redisrpctest.Serve(t, mux)
	return runs
}

// do sends cmds to c, each on its own, and fails the test at the first error.
func do(t *testing.T, c rueidis.Client, cmds ...rueidis.Completed) {
	t.Helper()
	for _, cmd := range cmds {
		if err := c.Do(context.Background(), cmd).Error(); err != nil {
			t.Fatal(err)
		}
	}
}

func (r *runCounter) count(n int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runs[n]
}

// durableRedis starts a redis-server of the test's own that writes every
// command to its append-only file before answering, and a client of it.
// loaded waits until the restarted Redis behind c has loaded its data and
// answers commands, not LOADING, so that its time up is time to serve.
func loaded(t *testing.T, c rueidis.Client) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		// EXISTS, not PING, which Redis answers while loading.
		err := c.Do(context.Background(), c.B().Exists().Key("loaded").Build()).Error()
		if err == nil {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("Redis restarted but answers %v after 30 s", err)
		}
	}
}

func durableRedis(t *testing.T) (port int, kill func(), args []string, c rueidis.Client) {
	t.Helper()
	args = []string{"--appendonly", "yes", "--appendfsync", "always", "--dir", t.TempDir()}
	port, kill = ownRedis(t, 0, args...)
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{fmt.Sprintf("127.0.0.1:%d", port)}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return port, kill, args, c
}

// TestEffectivelyOnce: Redis, writing every command to disk before it
// answers, is killed (-9) 20 times under 64 callers and restarted a second
// later each time, a second apart; two servers keep answers (WithDedupe),
// two clients send again what allows it (WithRetries(20): Redis is down
// half the time, and a call's sends may meet several outages). Every call
// completes with its answer, and every request runs exactly once: none
// lost with a response Redis was handing over when it died (the client
// finds it in no list and sends it again, answered from what was kept),
// none run twice. Over one list, and, with 5 kills, over three shards.
func TestEffectivelyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("kills of Redis; run without -short")
	}
	t.Parallel()
	for _, tc := range []struct{ shards, kills int }{{1, 20}, {3, 5}} {
		t.Run(fmt.Sprintf("shards=%d", tc.shards), func(t *testing.T) {
			t.Parallel()
			effectivelyOnce(t, tc.shards, tc.kills)
		})
	}
}

func effectivelyOnce(t *testing.T, shards, kills int) {
	port, kill, args, c := durableRedis(t)
	q := newQueue(t)
	var runs runCounter
	for range 2 {
		mux := redisrpc.NewMux(c, q, redisrpc.WithLogger(quiet), redisrpc.WithDedupe(0), redisrpc.WithShards(shards))
		redisrpc.Handle(mux, Once, runs.handle) // one count for both
		redisrpctest.Serve(t, mux)
	}
	var attempts atomic.Int64
	count := func(next redisrpc.CallFunc) redisrpc.CallFunc {
		return func(ctx context.Context, info *redisrpc.CallInfo, req any) (any, error) {
			v, err := next(ctx, info, req)
			attempts.Add(int64(info.Attempts))
			return v, err
		}
	}
	var clients [2]*redisrpc.Client
	for i := range clients {
		// Redis is down for a second of every two (loaded): each send of a
		// call caught in an outage meets one with even odds, so 10 retries
		// would leave about one call in two thousand failing over a run's
		// 1280.
		clients[i] = redisrpc.NewClient(c, q, redisrpc.WithLogger(quiet), redisrpc.WithRetries(20), redisrpc.WithInterceptors(count), redisrpc.WithShards(shards))
		defer clients[i].Close()
	}

	const callers = 64
	var next atomic.Int64
	var stop atomic.Bool
	var failed sync.Map // request -> error
	var wg sync.WaitGroup
	for i := range callers {
		client := clients[i%len(clients)]
		wg.Go(func() {
			for !stop.Load() {
				n := int(next.Add(1))
				// Time for the 20 sends: back-offs of up to 5 s, and waits
				// for the retry budget, which 64 callers share.
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				got, err := redisrpc.Call(ctx, client, Once, n)
				cancel()
				if err == nil && got != n {
					err = fmt.Errorf("got %d", got)
				}
				if err != nil {
					failed.Store(n, err)
				}
			}
		})
	}
	start := time.Now()
	for range kills {
		time.Sleep(time.Second)
		kill()
		time.Sleep(time.Second)
		_, kill = ownRedis(t, port, args...)
		loaded(t, c)
	}
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	kill()
	nfailed := 0
	failed.Range(func(k, v any) bool {
		nfailed++
		if nfailed <= 5 {
			t.Errorf("request %d: %v", k, v)
		}
		return true
	})
	twice := 0
	runs.mu.Lock()
	for n, r := range runs.runs {
		if r > 1 {
			twice++
			if twice <= 5 {
				t.Errorf("request %d ran %d times", n, r)
			}
		}
	}
	answered := len(runs.runs)
	runs.mu.Unlock()
	t.Logf("%d kills in %v: %d requests ran, %d sends in all; %d calls failed, %d requests ran more than once",
		kills, time.Since(start).Round(time.Millisecond), answered, attempts.Load(), nfailed, twice)
	if nfailed > 0 || twice > 0 {
		t.Errorf("%d calls failed and %d requests ran more than once, want 0 and 0", nfailed, twice)
	}
	if answered < kills*callers {
		t.Errorf("only %d requests ran in %d kills: the load did not go on", answered, kills)
	}
}

// TestAnsweredNotRunAgain: a request answered whose removal from its
// server's processing list was lost, or whose answer was kept and not yet
// pushed (the server died between the steps, as only on Redis Cluster they
// are not one transaction), is not run again when a server that keeps
// answers gives back that server's requests, and its caller gets the kept
// answer; a request with no kept answer runs, as the check of the test.
func TestAnsweredNotRunAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	q := newQueue(t)
	rq := q + ":rpc:CALLER"
	// A dead server's processing list holds two requests; the answer to the
	// first was kept.
	dead := "DEADSERVER"
	do(t, rc,
		rc.B().Rpush().Key(keys.Processing(q, dead)).Element(onceRequest(1, rq, 1), onceRequest(2, rq, 1)).Build(),
		rc.B().Zadd().Key(keys.Leases(q)).ScoreMember().ScoreMember(1, dead).Build(),
		rc.B().Set().Key(keys.Answered(q, rq, "1")).Value(`{"id":"1","return_value":1}`).Px(time.Minute).Build())
	runs := serveOnce(t, rc, q, redisrpc.WithDedupe(0), redisrpc.WithHeartbeat(300*time.Millisecond))
	if got := eventually(func() int { return runs.count(2) }, 1); got != 1 {
		t.Fatalf("the request with no kept answer ran %d times, want 1", got)
	}
	answers := map[string]bool{}
	for len(answers) < 2 {
		kv, err := rc.Do(ctx, rc.B().Blpop().Key(rq).Timeout(5).Build()).AsStrSlice()
		if err != nil {
			t.Fatalf("the answers in %s: %v (got %v)", rq, err, answers)
		}
		answers[kv[1]] = true
	}
	if !answers[`{"id":"1","return_value":1}`] {
		t.Errorf("answers: %v; want the kept one among them", answers)
	}
	if got := runs.count(1); got != 0 {
		t.Errorf("the request whose answer was kept ran %d times, want 0", got)
	}
	left, err := rc.Do(ctx, rc.B().Lrange().Key(q).Start(0).Stop(-1).Build()).AsStrSlice()
	if err != nil || len(left) != 0 {
		t.Errorf("the queue holds %q, %v; want nothing", left, err)
	}
}

// TestResendAnsweredFromKept: a request sent again (attempt 2), as a
// client does after a failure, whose answer was kept is answered with it
// and not run; one whose answer was not kept runs.
func TestResendAnsweredFromKept(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	q := newQueue(t)
	rq := q + ":rpc:CALLER"
	runs := serveOnce(t, rc, q, redisrpc.WithDedupe(time.Minute))
	do(t, rc, rc.B().Set().Key(keys.Answered(q, rq, "7")).Value(`{"id":"7","return_value":70}`).Px(time.Minute).Build(),
		rc.B().Rpush().Key(q).Element(onceRequest(7, rq, 2), onceRequest(8, rq, 2)).Build())
	var got []string
	for len(got) < 2 {
		kv, err := rc.Do(ctx, rc.B().Blpop().Key(rq).Timeout(5).Build()).AsStrSlice()
		if err != nil {
			t.Fatalf("waiting for the answers: %v (got %q)", err, got)
		}
		got = append(got, kv[1])
	}
	all := strings.Join(got, " ")
	if !strings.Contains(all, `{"id":"7","return_value":70}`) || !strings.Contains(all, `"id":"8","return_value":8`) {
		t.Errorf("answers: %q; want 7 from what was kept, 8 run", got)
	}
	if runs.count(7) != 0 || runs.count(8) != 1 {
		t.Errorf("runs: 7 ran %d times, 8 ran %d; want 0 and 1", runs.count(7), runs.count(8))
	}
	// 8's answer is kept now, for a send after this one.
	if n, err := rc.Do(ctx, rc.B().Exists().Key(keys.Answered(q, rq, "8")).Build()).AsInt64(); err != nil || n != 1 {
		t.Errorf("8's kept answer: exists=%d, %v", n, err)
	}
}

// pushCounter counts the requests a client pushes to a queue.
type pushCounter struct {
	rueidis.Client
	queue string
	n     atomic.Int64
}

func (p *pushCounter) DoMulti(ctx context.Context, multi ...rueidis.Completed) []rueidis.RedisResult {
	for _, c := range multi {
		if cmd := c.Commands(); len(cmd) > 2 && cmd[0] == "RPUSH" && cmd[1] == p.queue {
			p.n.Add(int64(len(cmd) - 2))
		}
	}
	return p.Client.DoMulti(ctx, multi...)
}

// TestRetriesRedisDown: Redis down for 2 s under 64 callers
// WithRetries(5), calls with 10 s deadlines: every call succeeds, and the
// requests the client pushes while Redis is down stay within the retry
// budget (20, and 10 a second), not 5 for each caller.
func TestRetriesRedisDown(t *testing.T) {
	t.Parallel()
	port, kill, args, c := durableRedis(t)
	q := newQueue(t)
	serveOnce(t, c, q, redisrpc.WithDedupe(0))
	pc := &pushCounter{Client: c, queue: q}
	client := redisrpc.NewClient(pc, q, redisrpc.WithLogger(quiet), redisrpc.WithRetries(5))
	defer client.Close()

	const callers = 64
	var next atomic.Int64
	var failed atomic.Int64
	downCalls := make(chan struct{})
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for {
				n := int(next.Add(1))
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := redisrpc.Call(ctx, client, Once, n)
				cancel()
				if err != nil {
					failed.Add(1)
					t.Errorf("call %d: %v", n, err)
				}
				select {
				case <-downCalls:
					return // each caller makes a call that began in the outage, then stops
				default:
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	kill()
	before := pc.n.Load()
	downAt := time.Now()
	time.Sleep(2 * time.Second)
	during := pc.n.Load() - before
	outage := time.Since(downAt)
	close(downCalls)
	_, kill = ownRedis(t, port, args...)
	defer kill()
	wg.Wait()
	limit := int64(callers + 20 + 10*outage.Seconds() + 10)
	t.Logf("%d calls, %d failed; %d requests pushed while Redis was down for %v (budget: %d)",
		next.Load(), failed.Load(), during, outage.Round(time.Millisecond), limit)
	if during > limit {
		t.Errorf("requests pushed while Redis was down: %d, want at most %d", during, limit)
	}
}

// TestRequeueKeptRefused: a dead letter whose servers kept an answer to it
// (WithDedupe) is not requeued, even WithAnswered: its caller was answered
// and it would not run; one with no kept answer is.
func TestRequeueKeptRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	q := newQueue(t)
	rq := q + ":rpc:CALLER"
	for _, n := range []int{1, 2} {
		letter := fmt.Sprintf(`{"request":%q,"why":"test","deliveries":3,"at":%d,"server":"S","answered":true}`, onceRequest(n, rq, 1), time.Now().UnixMilli())
		do(t, rc, rc.B().Lpush().Key(keys.Dead(q)).Element(letter).Build())
	}
	do(t, rc, rc.B().Set().Key(keys.Answered(q, rq, "1")).Value(`{"id":"1","exception":"dead","code":"internal"}`).Px(time.Minute).Build())
	dead, err := inspect.DeadLetters(ctx, rc, q)
	if err != nil || len(dead) != 2 {
		t.Fatalf("dead letters: %d, %v", len(dead), err)
	}
	for _, d := range dead {
		err := inspect.Requeue(ctx, rc, d, inspect.WithAnswered())
		switch d.ID {
		case "1":
			if !errors.Is(err, inspect.ErrKept) {
				t.Errorf("requeue of the dead letter with a kept answer: %v, want ErrKept", err)
			}
		case "2":
			if err != nil {
				t.Errorf("requeue of the dead letter with none: %v", err)
			}
		}
	}
	if n, err := rc.Do(ctx, rc.B().Llen().Key(q).Build()).AsInt64(); err != nil || n != 1 {
		t.Errorf("requests requeued: %d, %v; want 1", n, err)
	}
}

// TestKeptOnlyForCleanStrings: the scripts that give requests back build
// a kept answer's key from the request as cjson decodes it, and the server
// from the request as Go decodes it; where the response queue or id holds
// invalid UTF-8 or a lone surrogate, which Go makes U+FFFD, the two would
// differ, so no answer is kept for such a request (it is served as at
// least once), while one with a plain id is.
func TestKeptOnlyForCleanStrings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	q := newQueue(t)
	rq := q + ":rpc:CALLER"
	serveOnce(t, rc, q, redisrpc.WithDedupe(time.Minute))
	for i, id := range []string{"\xff1", `\ud800`, "plain"} {
		msg := fmt.Sprintf(`{"function_call":{"name":"once","args":[%d]},"response_queue":%q,"id":"%s"}`, i, rq, id) // the id as written, escapes and all
		do(t, rc, rc.B().Rpush().Key(q).Element(msg).Build())
		if _, err := rc.Do(ctx, rc.B().Blpop().Key(rq).Timeout(5).Build()).AsStrSlice(); err != nil {
			t.Fatalf("the answer to id %q: %v", id, err)
		}
	}
	kept, err := rc.Do(ctx, rc.B().Keys().Pattern(keys.AnsweredPrefix(q)+"*").Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != 1 || kept[0] != keys.Answered(q, rq, "plain") {
		t.Errorf("kept answers: %q; want the plain id's alone", kept)
	}
}

// TestDedupeVariety: answers kept on queues with braces in their names,
// over one list and three shards, with two Go clients (whose ids are the
// same counters: kept answers are told apart by response list), a classic
// one and CallAll: every call runs once; a retry sent to any shard list,
// and a request given back from a dead server's processing list there, are
// answered from what was kept and not run.
func TestDedupeVariety(t *testing.T) {
	t.Parallel()
	dedupeVariety(t, rc, true)
}

// dedupeVariety is TestDedupeVariety against c; count checks the kept
// answers with KEYS, which a cluster's client cannot.
func dedupeVariety(t *testing.T, c rueidis.Client, count bool) {
	ctx := context.Background()
	for _, shards := range []int{1, 3} {
		base := fmt.Sprintf("%s:%d", newQueue(t), shards) // list 0 of its own for each count
		for _, q := range []string{base, "{" + base + "}", base + ":{eu}", base + "}x"} {
			var runs runCounter
			mux := redisrpc.NewMux(c, q, redisrpc.WithLogger(quiet), redisrpc.WithDedupe(time.Minute),
				redisrpc.WithShards(shards), redisrpc.WithHeartbeat(300*time.Millisecond))
			redisrpc.Handle(mux, Once, runs.handle)
			served := make(chan error, 1)
			go func() { served <- mux.Serve(ctx) }()
			<-mux.Ready()
			opts := []redisrpc.ClientOption{redisrpc.WithLogger(quiet), redisrpc.WithShards(shards), redisrpc.WithRetries(2)}
			clients := []*redisrpc.Client{redisrpc.NewClient(c, q, opts...), redisrpc.NewClient(c, q, opts...),
				redisrpc.NewClient(c, q, redisrpc.WithLogger(quiet), redisrpc.WithClassicServer())}
			call := func(client *redisrpc.Client, n int) {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				if got, err := redisrpc.Call(cctx, client, Once, n); err != nil || got != n {
					t.Errorf("%s, %d shards, call %d: got %d, %v", q, shards, n, got, err)
				}
			}
			for n := range 12 {
				call(clients[n%2], n)
			}
			call(clients[2], 100)
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			all, err := redisrpc.CallAll(cctx, clients[0], Once, 101)
			cancel()
			if err != nil || len(all) != 1 || all[0].Err != nil || all[0].Value != 101 {
				t.Errorf("%s, %d shards: CallAll: %+v, %v", q, shards, all, err)
			}
			// On each list: a retry whose answer was kept, and a request of
			// a dead server, answered and not removed.
			rq := q + ":rpc:CALLER"
			lists := keys.Shards(q, shards)
			for i, list := range lists {
				retry, given := 200+i, 300+i
				do(t, c,
					c.B().Set().Key(keys.Answered(list, rq, fmt.Sprint(retry))).Value(fmt.Sprintf(`{"id":"%d","return_value":-1}`, retry)).Px(time.Minute).Build(),
					c.B().Set().Key(keys.Answered(list, rq, fmt.Sprint(given))).Value(fmt.Sprintf(`{"id":"%d","return_value":-2}`, given)).Px(time.Minute).Build(),
					c.B().Rpush().Key(keys.Processing(list, "DEAD")).Element(onceRequest(given, rq, 1)).Build(),
					c.B().Zadd().Key(keys.Leases(list)).ScoreMember().ScoreMember(1, "DEAD").Build(),
					c.B().Rpush().Key(list).Element(onceRequest(retry, rq, 2)).Build())
			}
			answers := map[string]bool{}
			for len(answers) < 2*len(lists) {
				// The dead server's request is given back at a live server's
				// beat, whose budget is a third of the heartbeat (100 ms here):
				// under the load of the tests beside it, beats fail and are
				// tried again, so the wait is generous.
				kv, err := c.Do(ctx, c.B().Blpop().Key(rq).Timeout(15).Build()).AsStrSlice()
				if err != nil {
					t.Fatalf("%s, %d shards: the kept answers: %v (got %v)", q, shards, err, answers)
				}
				answers[kv[1]] = true
			}
			for i := range lists {
				for _, n := range []int{200 + i, 300 + i} {
					if runs.count(n) != 0 {
						t.Errorf("%s, %d shards: request %d, answered before, ran %d times", q, shards, n, runs.count(n))
					}
				}
			}
			for n := range 12 {
				if runs.count(n) != 1 {
					t.Errorf("%s, %d shards: call %d ran %d times, want 1", q, shards, n, runs.count(n))
				}
			}
			if count {
				kept := 0
				for _, list := range lists {
					ks, err := c.Do(ctx, c.B().Keys().Pattern(keys.AnsweredPrefix(list)+"*").Build()).AsStrSlice()
					if err != nil {
						t.Fatal(err)
					}
					kept += len(ks)
				}
				// The calls of the Go clients and the classic one, and the
				// two of each list; none for CallAll, at most once.
				if want := 12 + 1 + 2*len(lists); kept != want {
					t.Errorf("%s, %d shards: %d answers kept, want %d", q, shards, kept, want)
				}
			}
			for _, client := range clients {
				client.Close()
			}
			mux.Shutdown(ctx)
			<-served
		}
	}
}

// onceRequest is a request of Once for n, as a client with response list
// rq sends it the attempt-th time.
func onceRequest(n int, rq string, attempt int) string {
	r := fmt.Sprintf(`{"function_call":{"name":"once","args":[%d]},"response_queue":%q,"id":"%d"`, n, rq, n)
	if attempt > 1 {
		r += fmt.Sprintf(`,"attempt":%d`, attempt)
	}
	return r + "}"
}

// TestPartitionOnce: the network between Redis and a server and a client
// that keep answers goes silent for 3 s under 16 callers, without closing
// a connection (what was sent into it is lost, pushes and pops time out),
// then heals: every call, with a 30 s deadline, completes with its answer,
// and every request runs exactly once.
func TestPartitionOnce(t *testing.T) {
	t.Parallel()
	p := newPartition(t, redisHost(t))
	q := newQueue(t)
	runs := serveOnce(t, p.client(t, 2*time.Second), q, redisrpc.WithDedupe(0))
	client := redisrpc.NewClient(p.client(t, 2*time.Second), q, redisrpc.WithLogger(quiet), redisrpc.WithRetries(5))
	defer client.Close()
	var next atomic.Int64
	var stop atomic.Bool
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for !stop.Load() {
				n := int(next.Add(1))
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				got, err := redisrpc.Call(ctx, client, Once, n)
				cancel()
				if err != nil || got != n {
					failed.Add(1)
					t.Errorf("call %d: got %d, %v", n, got, err)
				}
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	p.Cut()
	time.Sleep(3 * time.Second)
	p.Heal()
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	runs.mu.Lock()
	defer runs.mu.Unlock()
	twice := 0
	for n, r := range runs.runs {
		if r > 1 {
			twice++
			t.Errorf("request %d ran %d times", n, r)
		}
	}
	t.Logf("%d calls through a 3 s partition: %d failed, %d ran more than once", next.Load(), failed.Load(), twice)

}

// TestSendTimeoutOnce: the client's connections go silent for good while
// its calls' requests are being sent, with rueidis' default ConnWriteTimeout
// (10 s), so that each send ends at the library's own 5 s timeout, not at a
// failed read; the server's connection stays up. A call whose send timed out
// so is sent again once Redis says the request is in no list (WithDedupe):
// every call succeeds, and each request runs once. (The timeout's error
// hid its cause, and these calls failed at once with "sending the request:
// context deadline exceeded".)
func TestSendTimeoutOnce(t *testing.T) {
	t.Parallel()
	p := newPartition(t, redisHost(t))
	q := newQueue(t)
	runs := serveOnce(t, rc, q, redisrpc.WithDedupe(0))
	client := redisrpc.NewClient(p.client(t, 0), q, redisrpc.WithLogger(quiet), redisrpc.WithRetries(5))
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if _, err := redisrpc.Call(ctx, client, Once, 0); err != nil {
		t.Fatalf("a call before the partition: %v", err)
	}
	cancel()
	p.Cut()
	time.AfterFunc(time.Second, p.Heal) // new connections get through; the old ones stay silent
	const calls = 8
	var wg sync.WaitGroup
	for n := 1; n <= calls; n++ {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			start := time.Now()
			got, err := redisrpc.Call(ctx, client, Once, n)
			if err != nil || got != n {
				t.Errorf("call %d: got %d, %v after %v", n, got, err, time.Since(start).Round(time.Millisecond))
			}
		})
	}
	wg.Wait()
	for n := 1; n <= calls; n++ {
		if r := runs.count(n); r != 1 {
			t.Errorf("request %d ran %d times, want once", n, r)
		}
	}
}
