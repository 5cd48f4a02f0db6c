package faults_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

// The stream tests run one at a time, before the package's parallel tests
// (none calls t.Parallel): 100,000 items under the race detector load a
// 2-core machine, and the fault tests time kills and partitions.

// Ticks streams n items (forever for n < 0), one every ms milliseconds
// (none between them for 0); the server process serves it too.
var Ticks = redisrpc.NewStream[tickRequest, tick]("ticks")

type tickRequest struct {
	N  int `json:"n"`
	MS int `json:"ms"`
}

type tick struct {
	Seq int    `json:"seq"`
	Pad string `json:"pad"` // an item of 64 bytes
}

func ticks(ctx context.Context, r tickRequest, send func(tick) error) error {
	pad := strings.Repeat("x", 64-len(`{"seq":0,"pad":""}`))
	for i := 0; r.N < 0 || i < r.N; i++ {
		if r.MS > 0 {
			select {
			case <-time.After(time.Duration(r.MS) * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := send(tick{Seq: i, Pad: pad}); err != nil {
			return err
		}
	}
	return nil
}

// serveTicks serves Ticks, and h where set instead, on a new queue.
func serveTicks(t *testing.T, h func(context.Context, tickRequest, func(tick) error) error, opts ...redisrpc.MuxOption) string {
	t.Helper()
	q := newQueue(t)
	if h == nil {
		h = ticks
	}
	mux := redisrpc.NewMux(rc, q, append([]redisrpc.MuxOption{redisrpc.WithLogger(quiet)}, opts...)...)
	redisrpc.HandleStream(mux, Ticks, h)
	redisrpctest.Serve(t, mux)
	return q
}

// TestStreamInOrder: 100,000 items of 64 bytes come in order, each once,
// then the end; in both delivery modes.
func TestStreamInOrder(t *testing.T) {
	for _, mode := range []string{"at-most-once", "at-least-once"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var opts []redisrpc.MuxOption
			if mode == "at-least-once" {
				opts = append(opts, redisrpc.WithAtLeastOnce())
			}
			q := serveTicks(t, nil, opts...)
			c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			const n = 100_000
			start := time.Now()
			next := 0
			for item, err := range redisrpc.CallStream(ctx, c, Ticks, tickRequest{N: n}) {
				if err != nil {
					t.Fatalf("after %d items: %v", next, err)
				}
				if item.Seq != next {
					t.Fatalf("got item %d, want %d", item.Seq, next)
				}
				next++
			}
			if next != n {
				t.Fatalf("got %d items, want %d", next, n)
			}
			took := time.Since(start)
			t.Logf("%d items of 64 B in %v: %.0f items/s", n, took.Round(time.Millisecond), n/took.Seconds())
		})
	}
}

// TestStreamWindow: a consumer that sleeps 1 ms an item keeps what its
// server has sent and it has not read (queued, in Redis, in the client)
// within its window, and what waits in its response list, read while it
// runs, too.
func TestStreamWindow(t *testing.T) {
	var sent atomic.Int64
	q := serveTicks(t, func(ctx context.Context, r tickRequest, send func(tick) error) error {
		for i := range r.N {
			if err := send(tick{Seq: i}); err != nil {
				return err
			}
			sent.Add(1)
		}
		return nil
	})
	const window = 32
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithStreamWindow(window))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var deepest atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // reads the depth of the client's response list
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			names, err := rc.Do(ctx, rc.B().Keys().Pattern(q+":rpc:*").Build()).AsStrSlice()
			if err != nil {
				continue
			}
			for _, name := range names {
				if n, err := rc.Do(ctx, rc.B().Llen().Key(name).Build()).AsInt64(); err == nil && n > deepest.Load() && !strings.Contains(name, ":credit:") {
					deepest.Store(n)
				}
			}
		}
	})
	got, ahead := 0, int64(0)
	for _, err := range redisrpc.CallStream(ctx, c, Ticks, tickRequest{N: 500}) {
		if err != nil {
			t.Fatal(err)
		}
		got++
		ahead = max(ahead, sent.Load()-int64(got))
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if got != 500 {
		t.Fatalf("got %d items, want 500", got)
	}
	t.Logf("the server was at most %d items ahead of the consumer; at most %d messages waited in the response list (window %d)", ahead, deepest.Load(), window)
	if ahead > window || ahead < window/2 {
		t.Errorf("the server was at most %d items ahead of the consumer, want %d to %d: the window bounds it, and fills", ahead, window/2, window)
	}
	if deepest.Load() > window+2 {
		t.Errorf("%d messages waited in the response list, want at most %d: the window, a beat and the end", deepest.Load(), window+2)
	}
}

// TestStreamCancel: breaking out of the loop at item 10 ends the handler's
// context within 100 ms, and its send then fails with ErrStreamCanceled.
func TestStreamCancel(t *testing.T) {
	ended := make(chan time.Time, 1)
	sendErr := make(chan error, 1)
	q := serveTicks(t, func(ctx context.Context, r tickRequest, send func(tick) error) error {
		defer func() { ended <- time.Now() }()
		for i := 0; ; i++ {
			if err := send(tick{Seq: i}); err != nil {
				<-ctx.Done()
				sendErr <- err
				return err
			}
			time.Sleep(time.Millisecond)
		}
	})
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var broke time.Time
	for item, err := range redisrpc.CallStream(ctx, c, Ticks, tickRequest{}) {
		if err != nil {
			t.Fatal(err)
		}
		if item.Seq == 10 {
			broke = time.Now()
			break
		}
	}
	select {
	case at := <-ended:
		took := at.Sub(broke)
		t.Logf("the handler ended %v after the break", took.Round(time.Millisecond))
		if took > 100*time.Millisecond {
			t.Errorf("the handler ended %v after the break, want within 100 ms", took)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not end within 5 s of the break")
	}
	if err := <-sendErr; !errors.Is(err, redisrpc.ErrStreamCanceled) {
		t.Errorf("send after the break: got %v, want ErrStreamCanceled", err)
	}
}

// TestStreamServerKilled: SIGKILL of the server process mid-stream gives
// the caller an error within the server's heartbeat (1 s), never a silent
// end.
func TestStreamServerKilled(t *testing.T) {
	q := newQueue(t)
	child := startServer(t, q, "at-most-once").cmd
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var killed time.Time
	got := 0
	var last error
	for _, err := range redisrpc.CallStream(ctx, c, Ticks, tickRequest{N: -1, MS: 10}) {
		if err != nil {
			last = err
			break
		}
		if got++; got == 20 {
			killed = time.Now()
			if err := child.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	if last == nil {
		t.Fatalf("the stream ended without an error after %d items", got)
	}
	took := time.Since(killed)
	t.Logf("%d items, then %v after the kill: %v", got, took.Round(time.Millisecond), last)
	if redisrpc.CodeOf(last) != redisrpc.CodeUnavailable || took > 1500*time.Millisecond {
		t.Errorf("got %v %v after the kill, want unavailable within the heartbeat (1 s)", last, took)
	}
}

// TestStreamErrorsAndClassic: a handler's error after its items reaches the
// caller as an *Error with its code; a request without "stream", as a
// classic client sends, is answered with an exception saying to stream;
// Call of a stream endpoint fails likewise; interceptors see one call with
// its items counted.
func TestStreamErrorsAndClassic(t *testing.T) {
	var seen sync.Map
	count := func(next redisrpc.CallFunc) redisrpc.CallFunc {
		return func(ctx context.Context, info *redisrpc.CallInfo, req any) (any, error) {
			out, err := next(ctx, info, req)
			seen.Store(info.Side, fmt.Sprintf("%s stream=%v items=%d", info.Function, info.Stream, info.Items))
			return out, err
		}
	}
	q := serveTicks(t, func(ctx context.Context, r tickRequest, send func(tick) error) error {
		for i := range 3 {
			if err := send(tick{Seq: i}); err != nil {
				return err
			}
		}
		return redisrpc.NewError("out_of_ticks", "no more")
	}, redisrpc.WithInterceptors(count))
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithInterceptors(count))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := 0
	var last error
	for _, err := range redisrpc.CallStream(ctx, c, Ticks, tickRequest{}) {
		if err != nil {
			last = err
			break
		}
		got++
	}
	if got != 3 || redisrpc.CodeOf(last) != "out_of_ticks" {
		t.Errorf("got %d items and %v, want 3 and out_of_ticks", got, last)
	}
	for side, want := range map[redisrpc.Side]string{redisrpc.SideClient: "ticks stream=true items=3", redisrpc.SideServer: "ticks stream=true items=3"} {
		if v, _ := seen.Load(side); v != want {
			t.Errorf("the interceptor on side %d saw %v, want %s", side, v, want)
		}
	}
	// As a classic client calls it.
	reply := q + ":rpc:CLASSIC1"
	if err := rc.Do(ctx, rc.B().Rpush().Key(q).Element(`{"function_call":{"name":"ticks","args":[{"n":1}]},"response_queue":"`+reply+`"}`).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	kv, err := rc.Do(ctx, rc.B().Blpop().Key(reply).Timeout(5).Build()).AsStrSlice()
	if err != nil || !strings.Contains(kv[1], `"exception":"ticks is a stream endpoint`) {
		t.Errorf("a classic request: got %v, %v; want an exception saying ticks is a stream endpoint", kv, err)
	}
	for _, err := range redisrpc.CallStream(ctx, c, redisrpc.NewStream[int, int]("nope"), 1) {
		if redisrpc.CodeOf(err) != redisrpc.CodeNotFound {
			t.Errorf("a stream of a function not served: got %v, want not_found", err)
		}
	}
	for _, err := range redisrpc.CallStream(ctx, c, redisrpc.NewStream[string, tick]("ticks"), "not a request") {
		if redisrpc.CodeOf(err) != redisrpc.CodeInvalidArgument {
			t.Errorf("a stream with arguments that do not fit: got %v, want invalid_argument", err)
		}
	}
	_, err = redisrpc.Call(ctx, c, redisrpc.NewEndpoint[tickRequest, tick]("ticks"), tickRequest{N: 1})
	if redisrpc.CodeOf(err) != redisrpc.CodeInvalidArgument || !strings.Contains(err.Error(), "CallStream") {
		t.Errorf("Call of a stream endpoint: got %v, want invalid_argument saying to use CallStream", err)
	}
}

// TestStreamContract: a stream's item type is compared with the server's as
// a call's response is: a strict client whose items read another member
// fails at once.
func TestStreamContract(t *testing.T) {
	q := serveTicks(t, nil)
	type other struct {
		N int `json:"n"`
	}
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithStrictContract())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, err := range redisrpc.CallStream(ctx, c, redisrpc.NewStream[tickRequest, other]("ticks"), tickRequest{N: 1}) {
		if redisrpc.CodeOf(err) != redisrpc.CodeInvalidArgument || !strings.Contains(err.Error(), `the client reads "n", which the server never sends`) {
			t.Errorf("got %v, want invalid_argument naming n", err)
		}
	}
}
