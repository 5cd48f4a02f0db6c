package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

var echo = redisrpc.NewEndpoint[int, int]("echo")

// TestRefusedRequest: a request that Redis refused fails its call with
// Redis's error, not at the call's deadline, also when the receivers are
// idle.
func TestRefusedRequest(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := redisrpctest.Queue(t)
	ctx := context.Background()
	if err := rc.Do(ctx, rc.B().Set().Key(q).Value("not a list").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Do(ctx, rc.B().Del().Key(q).Build()) })
	c := redisrpc.NewClient(rc, q)
	defer c.Close()
	for i := range 3 {
		if i > 0 {
			// Let the receivers come back from Redis.
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
	if took := time.Since(start); took > 900*time.Millisecond {
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
