// Package redisrpctest helps test services built with redisrpc: a Redis to
// test against, a Mux served for the length of a test, the context a handler
// gets, for calling handlers directly, and CheckCodec, which holds a Codec to
// encoding/json.
//
//	func TestAdd(t *testing.T) {
//		t.Parallel()
//		rc := redisrpctest.Redis(t)
//		q := redisrpctest.Queue(t)
//		mux := redisrpc.NewMux(rc, q)
//		redisrpc.Handle(mux, Add, add)
//		redisrpctest.Serve(t, mux)
//		c := redisrpc.NewClient(rc, q)
//		defer c.Close()
//		got, err := redisrpc.Call(ctx, c, Add, 2)
//		...
//	}
package redisrpctest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/internal/localredis"
)

// server is the Redis the tests of one binary share while any runs.
var server struct {
	mu    sync.Mutex
	users int
	srv   *localredis.Server
}

// Redis returns a client of a Redis for tb, and closes it when tb ends: the
// one REDIS_URL names, else a redis-server from PATH started on a free
// loopback port, else an embedded, in-process Redis (miniredis). Tests that
// run at the same time share the server, which stops when the last of them
// ends; give each test queues of its own (Queue). It is safe for concurrent
// use, and fails tb where no Redis can be had.
func Redis(tb testing.TB) rueidis.Client {
	tb.Helper()
	srv, err := acquire()
	if err != nil {
		tb.Fatalf("redisrpctest: %v", err)
	}
	c, err := srv.Client()
	if err != nil {
		release()
		tb.Fatalf("redisrpctest: a client of %s: %v", srv.URL, err)
	}
	tb.Cleanup(func() {
		c.Close()
		release()
	})
	return c
}

func acquire() (*localredis.Server, error) {
	server.mu.Lock()
	defer server.mu.Unlock()
	if server.srv == nil {
		srv, err := localredis.Start(localredis.Any)
		if err != nil {
			return nil, err
		}
		server.srv = srv
	}
	server.users++
	return server.srv, nil
}

func release() {
	server.mu.Lock()
	defer server.mu.Unlock()
	if server.users--; server.users == 0 {
		server.srv.Close()
		server.srv = nil
	}
}

var queues atomic.Uint64

// Queue returns a queue name unique to tb in this run, made from its name.
func Queue(tb testing.TB) string {
	name := strings.NewReplacer("/", ".", " ", "_").Replace(tb.Name())
	return fmt.Sprintf("test:%s:%d.%d", name, time.Now().UnixNano(), queues.Add(1))
}

// Serve serves m until tb ends, then shuts it down, giving running handlers
// ten seconds, and fails tb if Shutdown fails or Serve returned anything but
// ErrServerClosed. It returns once m is registered (Mux.Ready), so that
// clients made WithFailFast see it.
func Serve(tb testing.TB, m *redisrpc.Mux) {
	tb.Helper()
	served := make(chan error, 1)
	go func() { served <- m.Serve(context.Background()) }()
	select {
	case <-m.Ready():
	case err := <-served:
		tb.Fatalf("redisrpctest: Serve: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			tb.Errorf("redisrpctest: Shutdown: got %v, want nil", err)
		}
		if err := <-served; !errors.Is(err, redisrpc.ErrServerClosed) {
			tb.Errorf("redisrpctest: Serve: got %v, want ErrServerClosed", err)
		}
	})
}

// HandlerContext returns the context a handler would get for a call
// described by info: CallInfoFromContext and IncomingMeta read it, and it
// ends at info.Deadline, if set, or when tb ends.
func HandlerContext(tb testing.TB, info redisrpc.CallInfo) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	if !info.Deadline.IsZero() {
		cancel()
		ctx, cancel = context.WithDeadline(context.Background(), info.Deadline)
	}
	tb.Cleanup(cancel)
	return redisrpc.NewIncomingContext(ctx, info)
}

// Benchmark makes b.N calls of call from callers goroutines at once and
// reports, beside allocations, the figures a user of a service cares about:
// calls/s, and the median and 99th percentile latency in microseconds
// (p50-us, p99-us). It fails b at the first call that fails.
//
//	func BenchmarkAdd(b *testing.B) {
//		...
//		redisrpctest.Benchmark(b, 16, func(ctx context.Context) error {
//			_, err := redisrpc.Call(ctx, c, Add, 2)
//			return err
//		})
//	}
func Benchmark(b *testing.B, callers int, call func(ctx context.Context) error) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := call(ctx); err != nil { // connections warm
		b.Fatal(err)
	}
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Value
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				if err := call(ctx); err != nil {
					failed.Store(err)
					return
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
}
