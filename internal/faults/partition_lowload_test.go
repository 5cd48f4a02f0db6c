package faults_test

import (
	"context"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc"
)

// TestSentRequestThenPartition: a call whose request Redis took, and
// whose client's connections are then cut off for 3 s, gets its response
// after the heal: its handler ran (the server is not behind the partition),
// and its call is not failed as if its request had not been sent.
func TestSentRequestThenPartition(t *testing.T) {
	t.Parallel()
	p := newPartition(t, redisHost(t))
	c := p.client(t, 0)
	q := newQueue(t)
	serve(t, rc, q) // the server is not behind the partition
	client := redisrpc.NewClient(c, q, redisrpc.WithLogger(quiet))
	defer client.Close()
	ctx := context.Background()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if _, err := redisrpc.Call(wctx, client, Slow, 0); err != nil {
		t.Fatal(err)
	}
	cancel()
	time.Sleep(200 * time.Millisecond) // idle receivers
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		got, err := redisrpc.Call(cctx, client, Slow, 1500)
		if err == nil && got != 1500 {
			t.Errorf("got %d", got)
		}
		done <- err
	}()
	time.Sleep(300 * time.Millisecond) // the request is in Redis, its handler runs
	if n := llen(t, q); n != 0 {
		t.Fatalf("the request is still queued (%d): the test tested nothing", n)
	}
	p.Cut()
	time.Sleep(3 * time.Second)
	p.Heal()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("a call whose request was sent and answered, over a 3 s partition: %v after %v; want its response", err, time.Since(start).Round(time.Millisecond))
		}
	case <-time.After(15 * time.Second):
		t.Errorf("the call got nothing within 15s of the heal; want an answer by the pop's deadline")
	}
}
