package faults_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc"
)

// TestLoneConcurrencyBound: WithConcurrency(2) bounds the handlers
// running at once, lone ones included, under bursts that go from one call
// to many.
func TestLoneConcurrencyBound(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithConcurrency(2))
	var running, worst atomic.Int32
	redisrpc.Handle(mux, Slow, func(ctx context.Context, ms int) (int, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			w := worst.Load()
			if n <= w || worst.CompareAndSwap(w, n) {
				break
			}
		}
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return ms, nil
	})
	startServe(t, mux)
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for round := range 20 {
		if _, err := redisrpc.Call(ctx, c, Slow, 5); err != nil { // lone
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 1 + round%5 {
			wg.Go(func() {
				if _, err := redisrpc.Call(ctx, c, Slow, 3); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	if w := worst.Load(); w > 2 {
		t.Errorf("WithConcurrency(2): %d handlers ran at once", w)
	}
}

func startServe(t *testing.T, mux *redisrpc.Mux) {
	served := make(chan error, 1)
	go func() { served <- mux.Serve(context.Background()) }()
	<-mux.Ready()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		mux.Shutdown(ctx)
		<-served
	})
}
