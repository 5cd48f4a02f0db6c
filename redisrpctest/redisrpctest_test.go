package redisrpctest_test

import (
	"context"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

var add = redisrpc.NewEndpoint[int, int]("add")

// TestServeAndCall: parallel tests each get a working Redis and a served Mux.
func TestServeAndCall(t *testing.T) {
	t.Parallel()
	for i := range 4 {
		t.Run("", func(t *testing.T) {
			t.Parallel()
			rc := redisrpctest.Redis(t)
			q := redisrpctest.Queue(t)
			mux := redisrpc.NewMux(rc, q)
			redisrpc.Handle(mux, add, func(_ context.Context, x int) (int, error) { return x + i, nil })
			redisrpctest.Serve(t, mux)
			c := redisrpc.NewClient(rc, q)
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if got, err := redisrpc.Call(ctx, c, add, 10); err != nil || got != 10+i {
				t.Errorf("add(10): got %d, %v; want %d, nil", got, err, 10+i)
			}
		})
	}
}

// TestServeCycles: serving and shutting down takes a test no time to speak
// of: 20 cycles well under 2 seconds.
func TestServeCycles(t *testing.T) {
	rc := redisrpctest.Redis(t)
	start := time.Now()
	t.Run("cycles", func(t *testing.T) {
		for range 20 {
			t.Run("", func(t *testing.T) {
				mux := redisrpc.NewMux(rc, redisrpctest.Queue(t), redisrpc.WithAtLeastOnce())
				redisrpctest.Serve(t, mux)
			})
		}
	})
	took := time.Since(start)
	t.Logf("20 serve/shutdown cycles: %v", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("20 serve/shutdown cycles took %v, want under 2s", took)
	}
}

// TestHandlerContext: a handler called directly gets its call information,
// metadata and deadline.
func TestHandlerContext(t *testing.T) {
	deadline := time.Now().Add(time.Hour)
	ctx := redisrpctest.HandlerContext(t, redisrpc.CallInfo{Function: "add", ID: "7", Deadline: deadline, Meta: map[string]string{"user": "ann"}})
	info := redisrpc.CallInfoFromContext(ctx)
	if info == nil || info.Function != "add" || info.ID != "7" || info.Side != redisrpc.SideServer || redisrpc.IncomingMeta(ctx)["user"] != "ann" {
		t.Errorf("the handler's call information: got %+v", info)
	}
	if dl, ok := ctx.Deadline(); !ok || !dl.Equal(deadline) {
		t.Errorf("the handler's deadline: got %v, %v; want %v", dl, ok, deadline)
	}
	if ctx := redisrpctest.HandlerContext(t, redisrpc.CallInfo{}); ctx.Err() != nil {
		t.Errorf("a handler context without a deadline: got %v, want a live context", ctx.Err())
	}
}
