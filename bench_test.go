package redisrpc_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/redisrpctest"
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

func benchCall(b *testing.B, callers, size int, interceptors ...redisrpc.Interceptor) {
	rc := redisrpctest.Redis(b)
	q := redisrpctest.Queue(b)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithConcurrency(max(64, callers)), redisrpc.WithInterceptors(interceptors...))
	redisrpc.Handle(mux, echo, func(_ context.Context, p payload) (payload, error) { return p, nil })
	redisrpctest.Serve(b, mux)
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithInterceptors(interceptors...))
	defer c.Close()
	// The JSON of a payload is about size bytes.
	req := payload{Data: strings.Repeat("x", max(size-20, 1))}
	redisrpctest.Benchmark(b, callers, func(ctx context.Context) error {
		_, err := redisrpc.Call(ctx, c, echo, req)
		return err
	})
}

// BenchmarkInterceptors measures what interceptors cost a call, at 16
// callers with 64 B payloads: none, and one that passes every call on, on
// both the client and the server. redisrpcotel's BenchmarkCallOTel measures
// its pair the same way.
//
//	go test -run '^$' -bench Interceptors -benchtime 100000x -count 5
func BenchmarkInterceptors(b *testing.B) {
	pass := func(next redisrpc.CallFunc) redisrpc.CallFunc {
		return func(ctx context.Context, info *redisrpc.CallInfo, req any) (any, error) { return next(ctx, info, req) }
	}
	b.Run("none", func(b *testing.B) { benchCall(b, 16, 64) })
	b.Run("one", func(b *testing.B) { benchCall(b, 16, 64, pass) })
}

func sizeName(n int) string {
	if n >= 1<<10 {
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
