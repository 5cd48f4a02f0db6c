package faults_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc"
)

// TestCarryCarriedRequestThenPartition: a request that rode with the pop
// that waits for its response, and whose connection is then cut off,
// fails its call as unavailable, saying that it may have run, once the
// pop's deadline passes; not at the caller's deadline. (Its handler did
// run: the server is not behind the partition.)
func TestCarryCarriedRequestThenPartition(t *testing.T) {
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
	time.Sleep(200 * time.Millisecond) // the receivers park: the next request rides with a pop
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
		if err != nil && (redisrpc.CodeOf(err) != redisrpc.CodeUnavailable || !strings.Contains(err.Error(), "may have run")) {
			t.Errorf("a call whose request rode with a pop, over a 3 s partition: %v after %v; want its response, or unavailable saying it may have run", err, time.Since(start).Round(time.Millisecond))
		}
	case <-time.After(15 * time.Second):
		t.Errorf("the call got nothing within 15s of the heal; want an answer by the pop's deadline")
	}
}
