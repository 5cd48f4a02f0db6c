package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

// TestClientsBounded: the page keeps a client for at most Clients queues,
// closing the least recently used, and closes one in use only once its call
// ended; after Run, it keeps none.
func TestClientsBounded(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	s := New(rc, true, slog.New(slog.NewTextHandler(io.Discard, nil)))
	base := redisrpctest.Queue(t)
	queue := func(i int) string { return fmt.Sprintf("%s.%d", base, i) }
	for i := range Clients + 5 {
		s.state.Services = append(s.state.Services, Service{Queue: queue(i)})
	}
	add := redisrpc.NewEndpoint[int, int]("add")
	for _, i := range []int{0, 1} { // served, so that a call tells a closed client from an open one
		mux := redisrpc.NewMux(rc, queue(i), redisrpc.WithLogger(s.log))
		redisrpc.Handle(mux, add, func(_ context.Context, x int) (int, error) { return x + 1, nil })
		redisrpctest.Serve(t, mux)
	}
	use := func(i int) *pageClient {
		t.Helper()
		pc, err := s.client(queue(i))
		if err != nil {
			t.Fatal(err)
		}
		return pc
	}
	held := use(0) // a call in flight on queue 0
	for i := 1; i < Clients; i++ {
		s.release(use(i))
	}
	s.release(use(1)) // used again: 2 is now the least recently used but 0
	s.release(use(Clients))
	s.release(use(Clients + 1))
	if len(s.clients) != Clients {
		t.Errorf("clients kept: got %d, want %d", len(s.clients), Clients)
	}
	for i, want := range map[int]bool{0: false, 1: true, 2: false, 3: true, Clients + 1: true} {
		if _, ok := s.clients[queue(i)]; ok != want {
			t.Errorf("the client of queue %d kept: got %v, want %v", i, ok, want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := redisrpc.Call(ctx, held.c, add, 1); err != nil {
		t.Errorf("the client of a call in flight, no longer kept: got %v, want it open until the call ends", err)
	}
	s.release(held)
	if _, err := redisrpc.Call(ctx, held.c, add, 1); !errors.Is(err, redisrpc.ErrClientClosed) {
		t.Errorf("a client no longer kept, after its call: got %v, want ErrClientClosed", err)
	}
	kept := s.clients[queue(1)].c
	runCtx, stop := context.WithCancel(context.Background())
	stop()
	s.Run(runCtx)
	if _, err := redisrpc.Call(ctx, kept, add, 1); !errors.Is(err, redisrpc.ErrClientClosed) || len(s.clients) != 0 {
		t.Errorf("after Run: got %v and %d clients, want ErrClientClosed and none", err, len(s.clients))
	}
	if _, err := s.client(queue(1)); err == nil {
		t.Errorf("a client after Run: got one, want an error")
	}
}
