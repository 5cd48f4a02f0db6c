package faults_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc"
)

// writes records, of a server's rueidis client, each DoMulti that pushes to
// a response list: with a pop of requests behind it (one write to Redis), or
// without.
type writes struct {
	rueidis.Client
	mu               sync.Mutex
	withPop, without int
}

func (w *writes) DoMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	push, pop := false, false
	for _, c := range cmds {
		switch c.Commands()[0] {
		case "RPUSH":
			push = push || len(c.Commands()) > 1 && isResponseList(c.Commands()[1])
		case "BLMPOP", "BLPOP":
			pop = true
		}
	}
	if push {
		w.mu.Lock()
		if pop {
			w.withPop++
		} else {
			w.without++
		}
		w.mu.Unlock()
	}
	return w.Client.DoMulti(ctx, cmds...)
}

func isResponseList(key string) bool {
	for i := 0; i+5 <= len(key); i++ {
		if key[i:i+5] == ":rpc:" {
			return true
		}
	}
	return false
}

// TestLoneResponseGoesWithNextPop: at one caller, at most once, each
// response goes to Redis in the same write as the server's next pop, not in
// a write of its own (item 2 of the fast path: one write per side per call).
func TestLoneResponseGoesWithNextPop(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	w := &writes{Client: rc}
	serve(t, w, q)
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const calls = 20
	for i := range calls {
		if got, err := redisrpc.Call(ctx, c, Slow, 0); err != nil || got != 0 {
			t.Fatalf("call %d: got %d, %v", i, got, err)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.withPop != calls || w.without != 0 {
		t.Errorf("of %d responses to one caller, %d went with a pop and %d alone; want all with a pop", calls, w.withPop, w.without)
	}
}

// TestSlowLoneHandlerLetsOthersIn: while the server runs a lone request's
// slow handler in the loop that popped it, the loop's sibling takes the
// next request, which a worker answers at once; with shards, whose loops
// have no sibling, no loop runs requests itself.
func TestSlowLoneHandlerLetsOthersIn(t *testing.T) {
	t.Parallel()
	for _, shards := range []int{1, 2} {
		t.Run(fmt.Sprint("shards=", shards), func(t *testing.T) {
			t.Parallel()
			slowLoneHandler(t, shards)
		})
	}
}

func slowLoneHandler(t *testing.T, shards int) {
	q := newQueue(t)
	serve(t, rc, q, redisrpc.WithShards(shards))
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := redisrpc.Call(ctx, c, Slow, 0); err != nil { // the client knows the shards
		t.Fatal(err)
	}
	for range 4 {
		slow := make(chan error, 1)
		go func() {
			_, err := redisrpc.Call(ctx, c, Slow, 1500)
			slow <- err
		}()
		time.Sleep(200 * time.Millisecond) // the slow one runs
		for range shards {                 // calls go round the shards: one lands on the slow one's
			start := time.Now()
			if _, err := redisrpc.Call(ctx, c, Slow, 0); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > 300*time.Millisecond {
				t.Errorf("a quick call while a lone handler runs 1.5 s took %v; want it answered at once", took.Round(time.Millisecond))
			}
		}
		if err := <-slow; err != nil {
			t.Fatal(err)
		}
	}
}

// TestStopAbandonsStuckLoneHandler: a lone handler that ignores its context
// does not hold up a stop: Serve drains, cuts off and abandons it as it does
// a worker's, and the caller hears the server stopped.
func TestStopAbandonsStuckLoneHandler(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{}, 1)
	redisrpc.Handle(mux, Slow, func(context.Context, int) (int, error) {
		started <- struct{}{}
		<-release // ignores its context
		return 0, nil
	})
	served := make(chan error, 1)
	go func() { served <- mux.Serve(context.Background()) }()
	<-mux.Ready()
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
	defer c.Close()
	called := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := redisrpc.Call(ctx, c, Slow, 1)
		called <- err
	}()
	<-started
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := mux.Shutdown(ctx); err == nil {
		t.Error("Shutdown returned nil with a handler stuck; want its context's error")
	}
	select {
	case <-served:
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("Serve returned %v after the stop began; want within the cut-off grace and leaving", took.Round(time.Millisecond))
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return 15 s after a hard stop, a lone handler stuck")
	}
	select {
	case err := <-called:
		if redisrpc.CodeOf(err) != redisrpc.CodeUnavailable {
			t.Errorf("the stuck call: got %v, want code unavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the stuck call got no answer 5 s after Serve returned")
	}
}
