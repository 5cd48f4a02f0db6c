package faults_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

// Hold waits until released.
var Hold = redisrpc.NewEndpoint[int, int]("hold")

// TestMaxInFlight: a Client with WithMaxInFlight(2) has two calls in flight
// at most; the others wait for a slot, and one whose deadline passes while
// it waits fails without sending its request.
func TestMaxInFlight(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	release := make(chan struct{})
	var running atomic.Int32
	redisrpc.Handle(mux, Hold, func(_ context.Context, x int) (int, error) {
		running.Add(1)
		<-release
		return x, nil
	})
	redisrpctest.Serve(t, mux)
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithMaxInFlight(2))
	defer c.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for i := range 5 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := redisrpc.Call(ctx, c, Hold, i)
			errs <- err
		})
	}
	time.Sleep(300 * time.Millisecond)
	if n := running.Load(); n != 2 {
		t.Errorf("handlers running with 5 calls and WithMaxInFlight(2): got %d, want 2", n)
	}
	if n := llen(t, q); n != 0 {
		t.Errorf("requests waiting in the queue: got %d, want 0 (the others wait in the client)", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err := redisrpc.Call(ctx, c, Hold, 9)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || running.Load() != 2 {
		t.Errorf("a call that waits for a slot past its deadline: got %v, %d running; want its deadline error, 2", err, running.Load())
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a held call: %v", err)
		}
	}
}

// TestTenThousandCallers: 10,000 callers at once against a server that takes
// 50ms a call, 64 at a time, with 2 s deadlines: calls past their deadline
// are shed (the server does not run them), every call ends at its deadline
// or with its answer, no answer is lost to a caller that still waits, and
// the memory the library holds is reported.
func TestTenThousandCallers(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 callers; run without -short")
	}
	q := newQueue(t)
	var ran, ranInTime atomic.Int64
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	redisrpc.Handle(mux, Slow, func(ctx context.Context, ms int) (int, error) {
		ran.Add(1)
		time.Sleep(time.Duration(ms) * time.Millisecond)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) > 100*time.Millisecond {
			ranInTime.Add(1) // its caller surely still waits for the answer
		}
		return ms, nil
	})
	redisrpctest.Serve(t, mux)
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
	defer c.Close()

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	sampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			select {
			case <-sampling:
				return
			case <-time.After(50 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()
	const callers = 10_000
	var ok, late, other atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range callers {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err := redisrpc.Call(ctx, c, Slow, 50)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, context.DeadlineExceeded):
				late.Add(1)
			default:
				other.Add(1)
				t.Errorf("a call: %v", err)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	close(sampling)
	<-sampled
	time.Sleep(300 * time.Millisecond) // the server drains what it took
	t.Logf("10,000 callers: %d answered, %d at their deadline, %d other, in %v; the server ran %d (%d with time to spare), shed %d; heap in use %.1f MiB before, %.1f MiB at the peak (with the callers' own goroutines)",
		ok.Load(), late.Load(), other.Load(), took.Round(time.Millisecond), ran.Load(), ranInTime.Load(), callers-ran.Load(),
		float64(before.HeapInuse)/(1<<20), float64(peak.Load())/(1<<20))
	if other.Load() != 0 {
		t.Errorf("calls ending otherwise than answered or at their deadline: %d", other.Load())
	}
	if took > 5*time.Second {
		t.Errorf("10,000 calls with 2 s deadlines took %v", took)
	}
	if ranInTime.Load() > ok.Load() {
		t.Errorf("answers lost: %d requests ran with time to spare, %d callers got answers", ranInTime.Load(), ok.Load())
	}
	if shed := callers - ran.Load(); shed < callers/2 {
		t.Errorf("requests shed past their deadline: got %d, want most of the %d the server had no time for", shed, callers)
	}
	if peak.Load() > before.HeapInuse+200<<20 {
		t.Errorf("heap in use grew by %.0f MiB, want it bounded", float64(peak.Load()-before.HeapInuse)/(1<<20))
	}
}

// TestMaxInFlightUnderLoad: 200 callers through WithMaxInFlight(5) never
// have more than 5 calls at the server at once, and all complete.
func TestMaxInFlightUnderLoad(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	var now, most atomic.Int32
	redisrpc.Handle(mux, Hold, func(_ context.Context, x int) (int, error) {
		n := now.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(time.Millisecond)
		now.Add(-1)
		return x, nil
	})
	redisrpctest.Serve(t, mux)
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithMaxInFlight(5))
	defer c.Close()
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range 200 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if got, err := redisrpc.Call(ctx, c, Hold, i); err != nil || got != i {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if most.Load() > 5 || most.Load() < 2 || failed.Load() != 0 {
		t.Errorf("calls at the server at once: at most %d; failed %d; want 2 to 5, and 0", most.Load(), failed.Load())
	}
}
