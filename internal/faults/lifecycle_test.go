package faults_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/inspect"
	"github.com/redisrpc/redisrpc/internal/keys"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

// TestCloseRacesCalls: Close while calls with tiny deadlines come and go
// neither races (go test -race) nor panics, and nothing reaches Redis from
// the client after Close returns.
func TestCloseRacesCalls(t *testing.T) {
	t.Parallel()
	for iter := range 40 {
		q := newQueue(t) + ":" + strconv.Itoa(iter) // served by nobody: requests stay
		c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for {
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(500))*time.Microsecond)
					_, err := redisrpc.Call(ctx, c, Slow, 1)
					cancel()
					if errors.Is(err, redisrpc.ErrClientClosed) {
						return
					}
				}
			})
		}
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
		c.Close()
		queued := llen(t, q)
		wg.Wait()
		time.Sleep(20 * time.Millisecond)
		if later := llen(t, q); later != queued {
			t.Fatalf("iteration %d: requests in the queue when Close returned: %d, 20ms later: %d; want no change", iter, queued, later)
		}
	}
}

func llen(t *testing.T, key string) int64 {
	t.Helper()
	n, err := rc.Do(context.Background(), rc.B().Llen().Key(key).Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestServeContextEnds: after one server's context ends, the calls made next
// are all served by the other server of the queue; the stopped server takes
// none and fails none (those its pops bring in go back).
func TestServeContextEnds(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"at-most-once", "at-least-once"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			q := newQueue(t)
			var opts []redisrpc.MuxOption
			if mode == "at-least-once" {
				opts = append(opts, redisrpc.WithAtLeastOnce())
			}
			a := redisrpc.NewMux(rc, q, append(opts, redisrpc.WithLogger(quiet))...)
			redisrpc.Handle(a, Slow, func(ctx context.Context, ms int) (int, error) { return -1, nil })
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- a.Serve(ctx) }()
			time.Sleep(200 * time.Millisecond) // a is waiting in Redis
			serve(t, rc, q, opts...)           // b answers with the argument
			cancel()
			time.Sleep(100 * time.Millisecond) // as a pop that a ends no sooner would still wait
			c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
			defer c.Close()
			var failed, fromA atomic.Int64
			var wg sync.WaitGroup
			for i := range 100 {
				wg.Go(func() {
					cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					got, err := redisrpc.Call(cctx, c, Slow, i)
					switch {
					case err != nil:
						failed.Add(1)
						t.Logf("call %d: %v", i, err)
					case got == -1:
						fromA.Add(1)
					}
				})
			}
			wg.Wait()
			if err := <-served; !errors.Is(err, context.Canceled) {
				t.Errorf("Serve after its context ended: got %v, want context.Canceled", err)
			}
			if failed.Load() != 0 || fromA.Load() != 0 {
				t.Errorf("of 100 calls after the stop: %d failed, %d served by the stopped server; want 0 and 0", failed.Load(), fromA.Load())
			}
		})
	}
}

// TestShutdownIdleIsQuick: serving and shutting down an idle Mux 20 times
// takes well under the second a waiting pop lasts, in both modes.
func TestShutdownIdleIsQuick(t *testing.T) {
	t.Parallel()
	for _, opts := range [][]redisrpc.MuxOption{nil, {redisrpc.WithAtLeastOnce()}, {redisrpc.WithShards(3)}, {redisrpc.WithShards(3), redisrpc.WithAtLeastOnce()}} {
		q := newQueue(t)
		start := time.Now()
		for range 20 {
			mux := redisrpc.NewMux(rc, q, append(opts, redisrpc.WithLogger(quiet))...)
			served := make(chan error, 1)
			go func() { served <- mux.Serve(context.Background()) }()
			time.Sleep(time.Millisecond) // let Serve start its pops
			if err := mux.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := <-served; !errors.Is(err, redisrpc.ErrServerClosed) {
				t.Fatalf("Serve: got %v, want ErrServerClosed", err)
			}
		}
		took := time.Since(start)
		t.Logf("20 serve/shutdown cycles (%d options): %v", len(opts), took.Round(time.Millisecond))
		if took > 2*time.Second {
			t.Errorf("20 serve/shutdown cycles took %v, want under 2s", took)
		}
	}
}

// Wait waits for its context to end, or for release to close when it
// ignores the context.
var Wait = redisrpc.NewEndpoint[bool, string]("wait")

// TestCutOffHandlers: handlers that a Shutdown giving up cuts off answer
// their callers with CodeUnavailable at most once; at least once their
// requests go to another server. A handler that ignores its context does not
// keep Serve from returning; it is logged and its late result dropped.
func TestCutOffHandlers(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"at-most-once", "at-least-once"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			q := newQueue(t)
			var opts []redisrpc.MuxOption
			if mode == "at-least-once" {
				opts = append(opts, redisrpc.WithAtLeastOnce())
			}
			h := &countingHandler{Handler: slog.NewTextHandler(io.Discard, nil)}
			a := redisrpc.NewMux(rc, q, append(opts, redisrpc.WithLogger(slog.New(h)))...)
			release := make(chan struct{})
			started := make(chan struct{}, 2)
			redisrpc.Handle(a, Wait, func(ctx context.Context, ignore bool) (string, error) {
				started <- struct{}{}
				if ignore {
					<-release
					return "late", nil
				}
				<-ctx.Done()
				return "", ctx.Err()
			})
			served := make(chan error, 1)
			go func() { served <- a.Serve(context.Background()) }()
			c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
			defer c.Close()
			results := make(chan error, 2)
			answers := make(chan string, 2)
			for _, ignore := range []bool{false, true} {
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					got, err := redisrpc.Call(ctx, c, Wait, ignore)
					answers <- got
					results <- err
				}()
			}
			<-started
			<-started
			if mode == "at-least-once" { // b takes what a gives back
				b := redisrpc.NewMux(rc, q, append(opts, redisrpc.WithLogger(quiet))...)
				redisrpc.Handle(b, Wait, func(context.Context, bool) (string, error) { return "from b", nil })
				redisrpctest.Serve(t, b)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			start := time.Now()
			if err := a.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Shutdown: got %v, want context.DeadlineExceeded", err)
			}
			if err := <-served; !errors.Is(err, redisrpc.ErrServerClosed) {
				t.Errorf("Serve: got %v, want ErrServerClosed", err)
			}
			t.Logf("Serve returned %v after Shutdown began, with a handler that ignores its context", time.Since(start).Round(time.Millisecond))
			for range 2 {
				err, got := <-results, <-answers
				switch mode {
				case "at-most-once":
					if redisrpc.CodeOf(err) != redisrpc.CodeUnavailable {
						t.Errorf("a call cut off by Shutdown: got %q, %v; want code unavailable", got, err)
					}
				default:
					if err != nil || got != "from b" {
						t.Errorf("a call cut off by Shutdown: got %q, %v; want \"from b\", nil", got, err)
					}
				}
			}
			if n := h.errors.Load(); n == 0 {
				t.Error("the handler that ignored its context was not logged")
			}
			close(release) // its late result goes nowhere
			if n := eventually(func() int64 { return processing(t, q) }, 0); n != 0 {
				t.Errorf("requests left in processing lists: %d, want 0", n)
			}
		})
	}
}

// Exit calls runtime.Goexit in the handler, as t.FailNow would.
var Exit = redisrpc.NewEndpoint[int, int]("exit")

// TestHandlerGoexit: a handler that ends its goroutine with runtime.Goexit
// answers CodeInternal, leaves nothing in a processing list, and the server
// goes on serving.
func TestHandlerGoexit(t *testing.T) {
	t.Parallel()
	for _, opts := range [][]redisrpc.MuxOption{nil, {redisrpc.WithAtLeastOnce()}} {
		q := newQueue(t)
		mux := serve(t, rc, q, opts...)
		redisrpc.Handle(mux, Exit, func(context.Context, int) (int, error) {
			runtime.Goexit()
			panic("unreachable")
		})
		c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for range 3 {
			if _, err := redisrpc.Call(ctx, c, Exit, 1); redisrpc.CodeOf(err) != redisrpc.CodeInternal {
				t.Errorf("a handler calling runtime.Goexit: got %v, want code internal", err)
			}
			if got, err := redisrpc.Call(ctx, c, Slow, 1); err != nil || got != 1 {
				t.Errorf("a call after it: got %d, %v; want 1, nil", got, err)
			}
		}
		// The answered requests leave their list just after their responses.
		if n := eventually(func() int64 { return processing(t, q) }, 0); n != 0 {
			t.Errorf("requests left in processing lists: %d, want 0", n)
		}
	}
}

// eventually returns f's value once it is want, or its last value after a
// second.
func eventually[T comparable](f func() T, want T) T {
	var got T
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got = f(); got == want {
			break
		}
	}
	return got
}

// processing returns how many requests the processing lists of q's servers hold.
func processing(t *testing.T, q string) int64 {
	t.Helper()
	ctx := context.Background()
	ids, err := rc.Do(ctx, rc.B().Zrange().Key(keys.Leases(q)).Min("0").Max("-1").Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, id := range ids {
		n += llen(t, keys.Processing(q, id))
	}
	return n
}

// TestShardsSeenAfterServersLeft: a server WithShards records its count, so
// that once every server has stopped, inspect still sees what waits on each
// shard.
func TestShardsSeenAfterServersLeft(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithShards(3))
	served := make(chan error, 1)
	go func() { served <- mux.Serve(context.Background()) }()
	<-mux.Ready()
	if err := mux.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-served
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, list := range keys.Shards(q, 3) {
		if err := rc.Do(ctx, rc.B().Rpush().Key(list).Element(`{"function_call":{"name":"slow"}}`).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	got, err := inspect.Inspect(ctx, rc, q)
	if err != nil || got.Depth != 3 || len(got.Lists) != 3 || len(got.Servers) != 0 {
		t.Errorf("Inspect with no server live: got %+v, %v; want depth 3 over 3 lists", got, err)
	}
}
