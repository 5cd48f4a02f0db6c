package faults_test

import (
	"context"
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
// under load and restarted: every call whose request Redis took completes
// after the restart, and no request runs again once its caller has its
// answer.
func TestDurableQueue(t *testing.T) {
	t.Parallel()
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
	mux := redisrpc.NewMux(c, q, redisrpc.WithLogger(slog.New(h)), redisrpc.WithAtLeastOnce(), redisrpc.WithHeartbeat(time.Second))
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
	client := redisrpc.NewClient(c, q, redisrpc.WithLogger(slog.New(h)))
	defer client.Close()

	const callers, jobs = 32, 2000
	var next, unsent, lost atomic.Int64
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
				default:
					lost.Add(1)
					t.Errorf("job %d: got %d, %v", n, got, err)
				}
			}
		})
	}
	time.Sleep(700 * time.Millisecond)
	kill()
	killed := time.Now()
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
	mu.Unlock()
	t.Logf("%d jobs: %d answered, %d not taken by Redis (sending failed), %d lost; %d ran more than once, %d of them after their caller had the answer; the last answer came %v after the kill",
		jobs, len(collected), unsent.Load(), lost.Load(), reran, twice, time.Since(killed).Round(time.Millisecond))
	if lost.Load() != 0 {
		t.Errorf("calls Redis had taken that did not complete: %d, want 0", lost.Load())
	}
	if twice != 0 {
		t.Errorf("requests that ran again after their caller had the answer: %d, want 0", twice)
	}
}
