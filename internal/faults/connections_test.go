package faults_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/internal/localredis"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

// TestRedisGone: with Redis gone, calls fail with the Redis error, not their
// deadline, and Serve returns when its context ends.
func TestRedisGone(t *testing.T) {
	t.Parallel()
	srv, err := localredis.StartEmbedded() // a server of its own, to stop
	if err != nil {
		t.Fatal(err)
	}
	opt, err := srv.Options()
	if err != nil {
		t.Fatal(err)
	}
	opt.DisableRetry = true
	gone, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	defer gone.Close()
	srv.Close()

	q := newQueue(t)
	mux := redisrpc.NewMux(gone, q, redisrpc.WithLogger(quiet))
	redisrpc.Handle(mux, redisrpc.NewEndpoint[int, int]("f"), func(_ context.Context, x int) (int, error) { return x, nil })
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- mux.Serve(ctx) }()

	c := redisrpc.NewClient(gone, q, redisrpc.WithLogger(quiet))
	defer c.Close()
	callDone := make(chan error, 1)
	go func() {
		_, err := redisrpc.Call(context.Background(), c, redisrpc.NewEndpoint[int, int]("f"), 1)
		callDone <- err
	}()
	select {
	case err := <-callDone:
		// The connection made before Redis stopped reads EOF; a new one
		// is refused (*net.OpError). Either is the cause the error wraps.
		var op *net.OpError
		if err == nil || errors.Is(err, context.DeadlineExceeded) || redisrpc.CodeOf(err) != redisrpc.CodeUnavailable ||
			!(errors.As(err, &op) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
			t.Errorf("Call: got %v, code %q; want a Redis error with CodeUnavailable that wraps the network error", err, redisrpc.CodeOf(err))
		}
	case <-time.After(10 * time.Second):
		t.Error("Call without a deadline hung with Redis gone")
	}
	cancel()
	select {
	case err := <-served:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Serve: got %v, want context.Canceled", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("Serve did not return after its context ended")
	}
}

// TestThousandCallsFewConnections: 1,000 calls in flight from one client use
// a handful of Redis connections: the pipelined ones plus two waiting pops.
func TestThousandCallsFewConnections(t *testing.T) {
	t.Parallel()
	if redis.Embedded {
		t.Skip("the embedded server does not list clients by name")
	}
	opt, err := redis.Options()
	if err != nil {
		t.Fatal(err)
	}
	opt.ClientName = fmt.Sprintf("conns-%d", time.Now().UnixNano())
	own, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()

	const calls = 1000
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithConcurrency(calls))
	var inside sync.WaitGroup
	inside.Add(calls)
	release := make(chan struct{})
	hold := redisrpc.NewEndpoint[int, int]("hold")
	redisrpc.Handle(mux, hold, func(_ context.Context, x int) (int, error) {
		inside.Done()
		<-release
		return x, nil
	})
	redisrpctest.Serve(t, mux)
	c := redisrpc.NewClient(own, q, redisrpc.WithLogger(quiet))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			if got, err := redisrpc.Call(ctx, c, hold, i); err != nil || got != i {
				t.Errorf("hold(%d): got %d, %v", i, got, err)
			}
		})
	}
	inside.Wait() // every call is in flight
	list, err := rc.Do(ctx, rc.B().ClientList().Build()).ToString()
	close(release)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	n := strings.Count(list, "name="+opt.ClientName+" ")
	t.Logf("%d calls in flight over %d connections", calls, n)
	if n == 0 || n > 8 {
		t.Errorf("connections of the client: got %d, want 1 to 8", n)
	}
}
