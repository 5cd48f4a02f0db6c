package client_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/internal/keys"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

// riding counts the pipelines that push to a list that push matches and
// pop in the same write: a request that rides with the pop that waits for
// its response, or a response with the pop that takes the next request.
type riding struct {
	rueidis.Client
	push func(list string) bool
	rode atomic.Int64
}

func (r *riding) DoMulti(ctx context.Context, multi ...rueidis.Completed) []rueidis.RedisResult {
	pushed, popped := false, false
	for _, c := range multi {
		args := c.Commands()
		switch {
		case args[0] == "RPUSH" && r.push(args[1]):
			pushed = true
		case args[0] == "BLMPOP" || args[0] == "BLPOP" || args[0] == "BLMOVE" || args[0] == "LMOVE":
			popped = true
		}
	}
	if pushed && popped {
		r.rode.Add(1)
	}
	return r.Client.DoMulti(ctx, multi...)
}

var echo = redisrpc.NewEndpoint[int, int]("echo")

// TestOneWritePerCall: at low load a call's request goes out with the pop
// that waits for its response, and the response with the server's next
// pop: one write per side per call, where there were two.
func TestOneWritePerCall(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"at most once", "at least once"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			rc := redisrpctest.Redis(t)
			q := redisrpctest.Queue(t)
			var opts []redisrpc.MuxOption
			if mode == "at least once" {
				opts = append(opts, redisrpc.WithAtLeastOnce())
			}
			// The client's requests go to the queue itself, the server's
			// responses to the client's list.
			server := &riding{Client: rc, push: func(l string) bool { return l != q }}
			client := &riding{Client: rc, push: func(l string) bool { return l == q }}
			var runs sync.Map
			mux := redisrpc.NewMux(server, q, opts...)
			redisrpc.Handle(mux, echo, func(_ context.Context, x int) (int, error) {
				n, _ := runs.LoadOrStore(x, new(atomic.Int32))
				n.(*atomic.Int32).Add(1)
				return x, nil
			})
			redisrpctest.Serve(t, mux)
			c := redisrpc.NewClient(client, q)
			defer c.Close()
			const calls = 200
			for i := range calls {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				got, err := redisrpc.Call(ctx, c, echo, i)
				cancel()
				if err != nil || got != i {
					t.Fatalf("call %d: got %d, %v", i, got, err)
				}
			}
			requests, responses := client.rode.Load(), server.rode.Load()
			t.Logf("%s: of %d calls, %d requests and %d responses rode with a pop", mode, calls, requests, responses)
			if requests < calls/2 {
				t.Errorf("%d of %d requests rode with the pop that waits for their response; want most", requests, calls)
			}
			if responses < calls/2 {
				t.Errorf("%d of %d responses rode with the server's next pop; want most", responses, calls)
			}
			for i := range calls {
				if n, ok := runs.Load(i); !ok || n.(*atomic.Int32).Load() != 1 {
					t.Errorf("request %d ran %v times, want once", i, n)
				}
			}
			if mode == "at least once" {
				// Each carried response removed its request in its transaction.
				ctx := context.Background()
				deadline := time.Now().Add(3 * time.Second)
				for {
					left, err := rc.Do(ctx, rc.B().Keys().Pattern(keys.Tag(q)+"*processing*").Build()).AsStrSlice()
					if err != nil {
						t.Fatal(err)
					}
					n := int64(0)
					for _, k := range left {
						l, _ := rc.Do(ctx, rc.B().Llen().Key(k).Build()).AsInt64()
						n += l
					}
					if n == 0 {
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("%d answered requests left in the processing lists %q", n, left)
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
}

// TestCarriedRequestRefused: a request that rode with a pop and that Redis
// refused fails its call with Redis's error, once the pop returns, not at
// the call's deadline.
func TestCarriedRequestRefused(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := redisrpctest.Queue(t)
	ctx := context.Background()
	if err := rc.Do(ctx, rc.B().Set().Key(q).Value("not a list").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Do(ctx, rc.B().Del().Key(q).Build()) })
	client := &riding{Client: rc, push: func(l string) bool { return l == q }}
	c := redisrpc.NewClient(client, q)
	defer c.Close()
	for i := range 3 {
		if i > 0 {
			// Let the receivers come back from Redis and park, so that the
			// next request rides with a pop.
			time.Sleep(1500 * time.Millisecond)
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		start := time.Now()
		_, err := redisrpc.Call(cctx, c, echo, i)
		cancel()
		took := time.Since(start)
		var rerr *rueidis.RedisError
		if redisrpc.CodeOf(err) != redisrpc.CodeUnavailable || !errors.As(err, &rerr) || !strings.Contains(rerr.Error(), "WRONGTYPE") || took > 3*time.Second {
			t.Errorf("call %d to a queue that is not a list: got %v after %v; want unavailable with the WRONGTYPE error within 3 s", i, err, took.Round(time.Millisecond))
		}
	}
	if client.rode.Load() == 0 {
		t.Error("no request rode with a pop: the test tested nothing")
	}
}

// TestCloseEndsPops: Close ends the receivers' pops waiting in Redis at
// once, with tokens that no call takes for a response, and the response
// list expires.
func TestCloseEndsPops(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := redisrpctest.Queue(t)
	c := redisrpc.NewClient(rc, q) // no server: the calls wait
	failed := make(chan error, 4)
	for i := range cap(failed) {
		go func() {
			_, err := redisrpc.Call(context.Background(), c, echo, i)
			failed <- err
		}()
	}
	time.Sleep(300 * time.Millisecond) // the receivers wait in Redis
	start := time.Now()
	c.Close()
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("Close took %v with pops waiting in Redis; want them ended at once", took.Round(time.Millisecond))
	}
	for range cap(failed) {
		if err := <-failed; !errors.Is(err, redisrpc.ErrClientClosed) {
			t.Errorf("a call in flight at Close: got %v, want ErrClientClosed", err)
		}
	}
	ctx := context.Background()
	lists, err := rc.Do(ctx, rc.B().Keys().Pattern(q+":*").Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lists {
		if ttl, err := rc.Do(ctx, rc.B().Ttl().Key(l).Build()).AsInt64(); err != nil || ttl < 0 {
			t.Errorf("%s is left with TTL %d, %v; want it to expire", l, ttl, err)
		}
	}
}
