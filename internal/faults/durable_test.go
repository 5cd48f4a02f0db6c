package faults_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc"
)

// Job records when it runs, for TestDurableQueue.
var Job = redisrpc.NewEndpoint[int, int]("job")

// TestDurableQueue: at least once, on a Redis that writes every command to
// its append-only file before answering (appendfsync always), killed (-9)
// under load and restarted: every request Redis took runs, every call
// completes after the restart but those whose responses Redis was handing to
// the client when it died, and no request runs again once its caller has its
// answer. (A client's pop takes responses out of Redis as Redis sends them;
// the kill loses what was sent and not yet read, so such a call ends with its
// deadline error although its request ran and was answered.) Over one list,
// and over three shards, whose answers and removals are one transaction each
// though the client's response list shares the slot of the first alone.
func TestDurableQueue(t *testing.T) {
	t.Parallel()
	for _, shards := range []int{1, 3} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			t.Parallel()
			durableQueue(t, shards)
		})
	}
}

func durableQueue(t *testing.T, shards int) {
	dir := t.TempDir()
	args := []string{"--appendonly", "yes", "--appendfsync", "always", "--dir", dir}
	port, kill := ownRedis(t, 0, args...)
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{fmt.Sprintf("127.0.0.1:%d", port)}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := newQueue(t)
	var (
		mu        sync.Mutex
		runs      = map[int][]time.Time{} // by job: when each run began
		collected = map[int]time.Time{}   // by job: when its caller had the answer
	)
	h := &countingHandler{Handler: slog.NewTextHandler(io.Discard, nil)}
	mux := redisrpc.NewMux(c, q, redisrpc.WithLogger(slog.New(h)), redisrpc.WithAtLeastOnce(), redisrpc.WithHeartbeat(time.Second), redisrpc.WithShards(shards))
	redisrpc.Handle(mux, Job, func(_ context.Context, n int) (int, error) {
		mu.Lock()
		runs[n] = append(runs[n], time.Now())
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		return n, nil
	})
	served := make(chan error, 1)
	go func() { served <- mux.Serve(context.Background()) }()
	defer func() { mux.Shutdown(context.Background()); <-served }()
	client := redisrpc.NewClient(c, q, redisrpc.WithLogger(slog.New(h)), redisrpc.WithShards(shards))
	defer client.Close()

	const callers, jobs = 32, 2000
	var next, unsent atomic.Int64
	var timedOut sync.Map // jobs whose calls ended with their deadline
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for n := int(next.Add(1)); n <= jobs; n = int(next.Add(1)) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				got, err := redisrpc.Call(ctx, client, Job, n)
				cancel()
				switch {
				case err == nil && got == n:
					mu.Lock()
					collected[n] = time.Now()
					mu.Unlock()
				case err != nil && strings.Contains(err.Error(), "sending the request"):
					unsent.Add(1) // Redis did not take it: no promise
					time.Sleep(20 * time.Millisecond)
				case errors.Is(err, context.DeadlineExceeded):
					timedOut.Store(n, err)
				default:
					t.Errorf("job %d: got %d, %v", n, got, err)
				}
			}
		})
	}
	time.Sleep(700 * time.Millisecond)
	killed := time.Now()
	kill()
	time.Sleep(time.Second)
	_, kill = ownRedis(t, port, args...)
	defer kill()
	wg.Wait()
	twice := 0
	mu.Lock()
	for n, at := range collected {
		for _, began := range runs[n][1:] {
			if began.After(at) {
				twice++
			}
		}
	}
	reran := 0
	for _, r := range runs {
		if len(r) > 1 {
			reran++
		}
	}
	// A call that timed out lost its response in the kill only if its
	// request ran, every run began before the kill, and the request is no
	// longer in Redis: a server answered it and removed it.
	left := strings.Join(allListed(t, c), "\n")
	lostInKill, lost := 0, 0
	timedOut.Range(func(k, v any) bool {
		n := k.(int)
		began := runs[n]
		answered := len(began) > 0 && began[len(began)-1].Before(killed) && !strings.Contains(left, fmt.Sprintf(`"args":[%d]`, n))
		if answered {
			lostInKill++
		} else {
			lost++
			t.Errorf("job %d: %v; its request ran at %v, the kill was at %v", n, v, began, killed)
		}
		return true
	})
	mu.Unlock()
	t.Logf("%d jobs: %d answered, %d not taken by Redis (sending failed), %d answered whose response the kill lost, %d lost; %d ran more than once, %d of them after their caller had the answer; the last call ended %v after the kill",
		jobs, len(collected), unsent.Load(), lostInKill, lost, reran, twice, time.Since(killed).Round(time.Millisecond))
	if lost != 0 {
		t.Errorf("calls Redis had taken that did not complete, their requests not answered before the kill: %d, want 0", lost)
	}
	if twice != 0 {
		t.Errorf("requests that ran again after their caller had the answer: %d, want 0", twice)
	}
}

// allListed returns every element of every list in c's Redis.
func allListed(t *testing.T, c rueidis.Client) []string {
	ctx := context.Background()
	names, err := c.Do(ctx, c.B().Keys().Pattern("*").Build()).AsStrSlice()
	if err != nil {
		t.Fatalf("listing the keys: %v", err)
	}
	var all []string
	for _, name := range names {
		if typ, _ := c.Do(ctx, c.B().Type().Key(name).Build()).ToString(); typ == "list" {
			els, err := c.Do(ctx, c.B().Lrange().Key(name).Start(0).Stop(-1).Build()).AsStrSlice()
			if err != nil {
				t.Fatalf("reading %s: %v", name, err)
			}
			all = append(all, els...)
		}
	}
	return all
}
