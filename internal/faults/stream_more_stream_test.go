package faults_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/internal/server"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

// A consumer slower than the heartbeat, on a stream whose messages (all of
// them, the end too) already wait in the client, gets all items and the
// end: the server is not silent, the client has its messages.
func TestStreamSlowConsumer(t *testing.T) {
	q := serveTicks(t, func(ctx context.Context, r tickRequest, send func(tick) error) error {
		for i := range 3 {
			if err := send(tick{Seq: i}); err != nil {
				return err
			}
		}
		return nil
	}, redisrpc.WithHeartbeat(300*time.Millisecond))
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := 0
	for _, err := range redisrpc.CallStream(ctx, c, Ticks, tickRequest{}) {
		if err != nil {
			t.Fatalf("after %d items: got %v (code %q), want all 3 items and the end", got, err, redisrpc.CodeOf(err))
		}
		got++
		time.Sleep(500 * time.Millisecond) // slower than the heartbeat
	}
	if got != 3 {
		t.Fatalf("got %d items, want 3", got)
	}
}

// infinite serves a stream that sends until send fails, reporting when its
// context ends.
func infinite(ended chan<- time.Time) func(context.Context, tickRequest, func(tick) error) error {
	return func(ctx context.Context, r tickRequest, send func(tick) error) error {
		defer func() {
			<-ctx.Done()
			ended <- time.Now()
		}()
		for i := 0; ; i++ {
			if err := send(tick{Seq: i}); err != nil {
				return err
			}
		}
	}
}

// Client.Close during a stream ends the iteration with ErrClientClosed and
// ends the server's handler: the caller has gone.
func TestStreamClientClose(t *testing.T) {
	ended := make(chan time.Time, 1)
	q := serveTicks(t, infinite(ended), redisrpc.WithHeartbeat(300*time.Millisecond))
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithStreamWindow(8))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := 0
	var last error
	for _, err := range redisrpc.CallStream(ctx, c, Ticks, tickRequest{}) {
		if err != nil {
			last = err
			break
		}
		if got++; got == 5 {
			go c.Close()
		}
	}
	if !errors.Is(last, redisrpc.ErrClientClosed) {
		t.Errorf("iteration ended with %v, want ErrClientClosed", last)
	}
	closed := time.Now()
	select {
	case at := <-ended:
		t.Logf("handler ended %v after Close", at.Sub(closed))
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's context had not ended 5 s after Client.Close: the server streams (beats, blocked on a full window) for ever")
	}
}

// TestStreamDeadCaller: a caller that vanishes (killed; here: a raw stream
// request whose reply list nobody reads, grants or cancels) holds its
// handler no longer than server.CallerTimeout (10 s): its client grants
// again every 2 s while it lives.
func TestStreamDeadCaller(t *testing.T) {
	if testing.Short() {
		t.Skip("10 s")
	}
	ended := make(chan time.Time, 1)
	q := serveTicks(t, infinite(ended), redisrpc.WithHeartbeat(300*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reply := q + ":rpc:DEADCALLER"
	req := `{"function_call":{"name":"ticks","args":[{"n":-1}]},"response_queue":"` + reply + `","id":"1","stream":4}`
	if err := rc.Do(ctx, rc.B().Rpush().Key(q).Element(req).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	select {
	case at := <-ended:
		t.Logf("handler ended %v after the request", at.Sub(start))
	case <-time.After(server.CallerTimeout + 2*time.Second):
		n, _ := rc.Do(ctx, rc.B().Llen().Key(reply).Build()).AsInt64()
		t.Fatalf("%v after a caller that never reads, the handler still runs; its response list holds %d messages", server.CallerTimeout+2*time.Second, n)
	}
}

// A hard stop (Shutdown's ctx ends) cuts off a stream whose handler stops
// when send fails, as the documentation of HandleStream invites: send must
// fail once the handler's context has ended, and the caller must get an
// error.
func TestStreamHardStopSend(t *testing.T) {
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithHeartbeat(300*time.Millisecond))
	var afterStop atomic.Int64
	var stopped atomic.Bool
	ended := make(chan struct{})
	redisrpc.HandleStream(mux, Ticks, func(ctx context.Context, r tickRequest, send func(tick) error) error {
		defer close(ended)
		for i := 0; ; i++ {
			ended := ctx.Err() != nil // before the send: one may race the stop
			if err := send(tick{Seq: i}); err != nil {
				return err
			}
			if ended {
				afterStop.Add(1)
				if afterStop.Load() > 100_000 {
					return errors.New("gave up: send never failed")
				}
			}
		}
	})
	served := make(chan error, 1)
	go func() { served <- mux.Serve(context.Background()) }()
	<-mux.Ready()
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithStreamWindow(64))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := 0
	var last error
	var stopAt time.Time
	for _, err := range redisrpc.CallStream(ctx, c, Ticks, tickRequest{}) {
		if err != nil {
			last = err
			break
		}
		if got++; got == 100 {
			stopAt = time.Now()
			go func() {
				sctx, scancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer scancel()
				mux.Shutdown(sctx)
				stopped.Store(true)
			}()
		}
		if !stopAt.IsZero() && time.Since(stopAt) > 5*time.Second {
			break
		}
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
	}
	t.Logf("items: %d; sends that succeeded after the handler's context ended: %d; stream ended with %v %v after the stop", got, afterStop.Load(), last, time.Since(stopAt).Round(time.Millisecond))
	if last == nil || afterStop.Load() > 0 {
		t.Errorf("after a hard stop: got %d successful sends after ctx ended and iteration end %v; want send to fail and the caller to get unavailable", afterStop.Load(), last)
	}
}

// A panic in a server interceptor after the stream opened: the caller gets
// internal, and the stream's goroutine stops beating.
func TestStreamInterceptorPanic(t *testing.T) {
	boom := func(next redisrpc.CallFunc) redisrpc.CallFunc {
		return func(ctx context.Context, info *redisrpc.CallInfo, req any) (any, error) {
			out, err := next(ctx, info, req)
			if info.Stream {
				panic("interceptor bug")
			}
			return out, err
		}
	}
	q := serveTicks(t, nil, redisrpc.WithHeartbeat(300*time.Millisecond), redisrpc.WithInterceptors(boom))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reply := q + ":rpc:PANIC"
	req := `{"function_call":{"name":"ticks","args":[{"n":2}]},"response_queue":"` + reply + `","id":"1","stream":16}`
	if err := rc.Do(ctx, rc.B().Rpush().Key(q).Element(req).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for {
		kv, err := rc.Do(ctx, rc.B().Blpop().Key(reply).Timeout(5).Build()).AsStrSlice()
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, kv[1])
		if strings.Contains(kv[1], "exception") || strings.Contains(kv[1], "return_value") {
			break
		}
	}
	t.Logf("messages: %q", msgs)
	time.Sleep(2 * time.Second)
	n, _ := rc.Do(ctx, rc.B().Llen().Key(reply).Build()).AsInt64()
	if n > 0 {
		after, _ := rc.Do(ctx, rc.B().Lrange().Key(reply).Start(0).Stop(2).Build()).AsStrSlice()
		t.Errorf("2 s after the stream's end, %d more messages came (%q...): its goroutine still beats, the handler's context is never cancelled", n, after)
	}
}

// send called after the handler returned (a goroutine it left) must fail:
// its item will never be sent.
func TestStreamSendAfterReturn(t *testing.T) {
	sends := make(chan func(tick) error, 1)
	q := serveTicks(t, func(ctx context.Context, r tickRequest, send func(tick) error) error {
		sends <- send
		return nil
	})
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, err := range redisrpc.CallStream(ctx, c, Ticks, tickRequest{}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	send := <-sends
	if err := send(tick{Seq: 99}); err == nil {
		t.Errorf("send after the handler returned: got nil (the item is dropped silently), want an error")
	}
}

// TestStreamTakenNeverStarted: a server that takes a stream request and
// dies before it starts it (at most once, a request popped and waiting for
// a slot): the caller, without a deadline, as streams have none, fails with
// unavailable once WithCallTimeout has passed without a start.
func TestStreamTakenNeverStarted(t *testing.T) {
	q := newQueue(t)
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithCallTimeout(time.Second))
	defer c.Close()
	go func() { // the server that took it and was killed
		rc.Do(context.Background(), rc.B().Blpop().Key(q).Timeout(5).Build())
	}()
	var last error
	start := time.Now()
	for _, err := range redisrpc.CallStream(context.Background(), c, Ticks, tickRequest{N: 1}) {
		last = err
	}
	if took := time.Since(start); redisrpc.CodeOf(last) != redisrpc.CodeUnavailable || took > 2*time.Second {
		t.Errorf("got %v after %v, want unavailable after WithCallTimeout (1 s)", last, took)
	}
}

var _ = redisrpctest.Serve

// A hard stop (Serve's ctx ends) at least once, of a stream handler that
// ignores its context for a while: the caller should hear of it when Serve
// gives up on the handler (a second), not only when the handler returns.
func TestStreamHardStopAtLeastOnce(t *testing.T) {
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithHeartbeat(300*time.Millisecond), redisrpc.WithAtLeastOnce())
	redisrpc.HandleStream(mux, Ticks, func(ctx context.Context, r tickRequest, send func(tick) error) error {
		send(tick{})
		time.Sleep(8 * time.Second) // ignores ctx
		return nil
	})
	sctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- mux.Serve(sctx) }()
	<-mux.Ready()
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stopAt time.Time
	var last error
	for _, err := range redisrpc.CallStream(ctx, c, Ticks, tickRequest{}) {
		if err != nil {
			last = err
			break
		}
		stopAt = time.Now()
		stop()
	}
	took := time.Since(stopAt)
	<-served
	t.Logf("got %v %v after the stop", last, took.Round(time.Millisecond))
	if last == nil || took > 2500*time.Millisecond {
		t.Errorf("got %v %v after the hard stop; want unavailable within ~1 s (Serve abandons the handler) plus the heartbeat", last, took.Round(time.Millisecond))
	}
}
