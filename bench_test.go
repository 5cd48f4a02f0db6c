package redisrpc_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc"
)

type payload struct {
	ID   int    `json:"id"`
	Data string `json:"data"`
}

var echo = redisrpc.NewEndpoint[payload, payload]("echo")

// BenchmarkCall measures Call against an echo handler over the tests' Redis,
// with a fixed number of concurrent callers sharing one Client, as a service
// would. It reports calls/s, latency percentiles in microseconds and, through
// ReportAllocs, the allocations of client and server together per call.
//
//	go test -run '^$' -bench Call -benchtime 20000x
func BenchmarkCall(b *testing.B) {
	for _, callers := range []int{1, 16, 256} {
		for _, size := range []int{64, 1 << 10, 64 << 10} {
			b.Run(fmt.Sprintf("callers=%d/payload=%s", callers, sizeName(size)), func(b *testing.B) {
				benchCall(b, callers, size)
			})
		}
	}
}

func benchCall(b *testing.B, callers, size int) {
	q := fmt.Sprintf("bench:%d", time.Now().UnixNano())
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithConcurrency(max(64, callers)))
	redisrpc.Handle(mux, echo, func(_ context.Context, p payload) (payload, error) { return p, nil })
	served := make(chan error, 1)
	go func() { served <- mux.Serve(context.Background()) }()
	defer func() {
		mux.Shutdown(context.Background())
		<-served
	}()
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
	defer c.Close()

	// The JSON of a payload is about size bytes.
	req := payload{Data: strings.Repeat("x", max(size-20, 1))}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := redisrpc.Call(ctx, c, echo, req); err != nil { // warm up connections
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
				if _, err := redisrpc.Call(ctx, c, echo, req); err != nil {
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

func sizeName(n int) string {
	if n >= 1<<10 {
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
