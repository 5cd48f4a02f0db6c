package faults_test

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc"
)

// TestSoak runs calls at full speed for a minute, in at-least-once mode, and
// checks that goroutines, Redis keys and memory do not grow. -short skips it.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("a one-minute soak; run without -short")
	}
	const (
		length  = 60 * time.Second
		callers = 64
	)
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithAtLeastOnce(), redisrpc.WithConcurrency(callers))
	redisrpc.Handle(mux, Slow, func(_ context.Context, ms int) (int, error) { return ms, nil })
	served := make(chan error, 1)
	go func() { served <- mux.Serve(context.Background()) }()
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))

	type sample struct {
		heap       uint64
		goroutines int // but workers, started as load needs, up to the concurrency
		workers    int
		keys       int
	}
	// A sample is the least of several snapshots, so that what exists only
	// for a moment (a response list between push and pop, a sender between
	// batches) does not count as growth; a leak raises the least value too.
	measure := func() sample {
		least := sample{heap: ^uint64(0), goroutines: int(^uint(0) >> 1), keys: int(^uint(0) >> 1)}
		for range 5 {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			least.heap = min(least.heap, ms.HeapInuse)
			w := workers()
			least.workers = max(least.workers, w)
			least.goroutines = min(least.goroutines, runtime.NumGoroutine()-w)
			least.keys = min(least.keys, len(scan(t, q)))
			time.Sleep(50 * time.Millisecond)
		}
		return least
	}
	var (
		calls, failures atomic.Int64
		stop            atomic.Bool
		wg              sync.WaitGroup
	)
	for range callers {
		wg.Go(func() {
			for !stop.Load() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if _, err := redisrpc.Call(ctx, c, Slow, 1); err != nil {
					failures.Add(1)
				}
				cancel()
				calls.Add(1)
			}
		})
	}
	time.Sleep(length / 6)
	early := measure()
	time.Sleep(length - length/6)
	late := measure()
	running := libraryGoroutines()
	stop.Store(true)
	wg.Wait()
	c.Close()
	mux.Shutdown(context.Background())
	<-served
	t.Logf("%d calls, %d failed; at 10s: heap %.1f MiB, %d goroutines and %d workers, %d keys; at 60s: heap %.1f MiB, %d goroutines and %d workers, %d keys",
		calls.Load(), failures.Load(), float64(early.heap)/(1<<20), early.goroutines, early.workers, early.keys,
		float64(late.heap)/(1<<20), late.goroutines, late.workers, late.keys)

	if failures.Load() != 0 {
		t.Errorf("failed calls: got %d, want 0", failures.Load())
	}
	if late.heap > early.heap+early.heap/2+(1<<20) {
		t.Errorf("heap in use grew from %d to %d bytes", early.heap, late.heap)
	}
	if late.goroutines > early.goroutines+5 {
		t.Errorf("goroutines other than workers grew from %d to %d", early.goroutines, late.goroutines)
	}
	if late.workers > callers {
		t.Errorf("workers: got %d, want at most the concurrency, %d", late.workers, callers)
	}
	if late.keys > early.keys+2 {
		t.Errorf("keys grew from %d to %d", early.keys, late.keys)
	}
	// After the run no goroutine of the library is left (rueidis keeps its own).
	if running == 0 {
		t.Fatal("no library goroutine seen while serving: libraryGoroutines is broken")
	}
	if n := libraryGoroutines(); n != 0 {
		t.Errorf("library goroutines after Shutdown and Close: got %d, want 0", n)
	}
	for _, k := range scan(t, q) {
		if ttl, _ := rc.Do(context.Background(), rc.B().Pttl().Key(k).Build()).AsInt64(); ttl == -1 {
			t.Errorf("key %s left without a TTL", k)
		}
	}
}

// workers counts the server's worker goroutines, which a Mux starts as load
// needs them, up to its concurrency.
func workers() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "internal/server.(*run).startWorker.func1")
}

// libraryGoroutines counts goroutines running code of the library.
func libraryGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/redisrpc/redisrpc.") || strings.Contains(g, "github.com/redisrpc/redisrpc/internal/server.") ||
			strings.Contains(g, "github.com/redisrpc/redisrpc/internal/client.") || strings.Contains(g, "github.com/redisrpc/redisrpc/internal/lists.") {
			n++
		}
	}
	return n
}
