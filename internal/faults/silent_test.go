package faults_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc"
)

// TestServeAndDrainWhileRedisIsSilent: with Redis silent, ServeAndDrain(ctx,
// 200ms) of an idle server returns within the grace and one 5 s timeout of
// the stop's commands, not one timeout after another (it took 10 to 21 s).
func TestServeAndDrainWhileRedisIsSilent(t *testing.T) {
	t.Parallel()
	host := redisHost(t)
	p := newPartition(t, host)
	c := p.client(t, 2*time.Second)
	mux := redisrpc.NewMux(c, newQueue(t), redisrpc.WithLogger(quiet))
	redisrpc.Handle(mux, Slow, func(_ context.Context, ms int) (int, error) { return ms, nil })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- mux.ServeAndDrain(ctx, 200*time.Millisecond) }()
	select {
	case <-mux.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("not registered within 5 s")
	}
	time.Sleep(300 * time.Millisecond)
	p.Cut()
	start := time.Now()
	cancel()                     // SIGTERM
	const want = 7 * time.Second // the grace, and one 5 s timeout of leaving, with slack
	select {
	case err := <-done:
		if took := time.Since(start); took > want {
			t.Errorf("ServeAndDrain(ctx, 200ms) of an idle server, Redis silent: returned %v after %v; want within %v", err, took.Round(100*time.Millisecond), want)
		}
	case <-time.After(40 * time.Second):
		t.Errorf("ServeAndDrain(ctx, 200ms) of an idle server, Redis silent: not returned 40 s after its context ended; want within %v", want)
		p.close()
		<-done
	}
}

// TestSendTimeoutIsNotTheCallersDeadline: with Redis silent, a call whose
// send gives up after the client's own 5 s write timeout fails unavailable,
// and does not match context.DeadlineExceeded, its caller's deadline 15 s
// away.
func TestSendTimeoutIsNotTheCallersDeadline(t *testing.T) {
	t.Parallel()
	host := redisHost(t)
	p := newPartition(t, host)
	c := p.client(t, 0)
	q := newQueue(t)
	client := redisrpc.NewClient(c, q, redisrpc.WithLogger(quiet))
	defer client.Close()
	warm, cancel := context.WithTimeout(context.Background(), time.Second)
	redisrpc.Call(warm, client, Slow, 1) // reads the registry; no server: ends at its deadline
	cancel()
	p.Cut()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err := redisrpc.Call(ctx, client, Slow, 1)
	took := time.Since(start)
	if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		left, _ := ctx.Deadline()
		t.Errorf("Redis silent, a call with a 20 s deadline: got %v (code %q) after %v, which matches context.DeadlineExceeded with %v of the caller's deadline left; want it not to",
			err, redisrpc.CodeOf(err), took.Round(100*time.Millisecond), time.Until(left).Round(time.Second))
	}
}
