package redisrpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/goleak"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/internal/localredis"
	"github.com/redisrpc/redisrpc/internal/rpctest"
)

// rc talks to the Redis of the tests: REDIS_URL, else redis-server from PATH,
// else the embedded server.
var (
	rc    rueidis.Client
	redis *localredis.Server
)

func TestMain(m *testing.M) {
	var err error
	if redis, rc, err = localredis.StartWithClient(localredis.Any); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "testing against %s (%s)\n", redis.URL, redis.Kind)
	code := m.Run()
	rc.Close()
	redis.Close()
	if code == 0 {
		// rueidis may still be sleeping in a delayed retry of its own after Close.
		if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*call).DelayDo.func1")); err != nil {
			fmt.Fprintln(os.Stderr, "leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newQueue returns a request queue no other test uses.
func newQueue(t *testing.T) string {
	return fmt.Sprintf("test:%s:%d", strings.ReplaceAll(t.Name(), "/", "."), time.Now().UnixNano())
}

// serve serves mux until the test ends, then shuts it down and checks that
// Serve returned ErrServerClosed.
func serve(t *testing.T, mux *redisrpc.Mux) { t.Helper(); rpctest.Serve(t, mux) }

func newClient(t *testing.T, queue string, opts ...redisrpc.Option) *redisrpc.Client {
	c := redisrpc.NewClient(rc, queue, append([]redisrpc.Option{redisrpc.WithLogger(quiet)}, opts...)...)
	t.Cleanup(func() { c.Close() })
	return c
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// rawCall pushes body to queue as a request and returns the response pushed to
// respQueue, or "" if none came within wait.
func rawCall(t *testing.T, queue, respQueue, body string, wait time.Duration) string {
	t.Helper()
	ctx := timeout(t, wait+5*time.Second)
	if err := rc.Do(ctx, rc.B().Rpush().Key(queue).Element(body).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	kv, err := rc.Do(ctx, rc.B().Blpop().Key(respQueue).Timeout(wait.Seconds()).Build()).AsStrSlice()
	if rueidis.IsRedisNil(err) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return kv[1]
}

type point struct {
	X int `json:"x"`
	Y int `json:"y"`
}

func TestCallRoundTrip(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	var (
		add   = redisrpc.NewEndpoint[float64, float64]("add")
		norm  = redisrpc.NewEndpoint[point, point]("norm")
		sum   = redisrpc.NewEndpoint[[]int, int]("sum")
		ping  = redisrpc.NewEndpoint[struct{}, string]("ping")
		maybe = redisrpc.NewEndpoint[string, *string]("maybe")
	)
	redisrpc.Handle(mux, add, func(_ context.Context, x float64) (float64, error) { return x + 1, nil })
	redisrpc.Handle(mux, norm, func(_ context.Context, p point) (point, error) { return point{p.Y, p.X}, nil })
	redisrpc.Handle(mux, sum, func(_ context.Context, xs []int) (int, error) {
		n := 0
		for _, x := range xs {
			n += x
		}
		return n, nil
	})
	redisrpc.Handle(mux, ping, func(context.Context, struct{}) (string, error) { return "pong", nil })
	redisrpc.Handle(mux, maybe, func(_ context.Context, s string) (*string, error) {
		if s == "" {
			return nil, nil
		}
		return &s, nil
	})
	serve(t, mux)
	c := newClient(t, q)
	ctx := timeout(t, 10*time.Second)

	if got, err := redisrpc.Call(ctx, c, add, 1.5); err != nil || got != 2.5 {
		t.Errorf("add(1.5): got %v, %v; want 2.5, nil", got, err)
	}
	if got, err := redisrpc.Call(ctx, c, norm, point{1, 2}); err != nil || got != (point{2, 1}) {
		t.Errorf("norm: got %v, %v; want {2 1}, nil", got, err)
	}
	if got, err := redisrpc.Call(ctx, c, sum, []int{1, 2, 3}); err != nil || got != 6 {
		t.Errorf("sum: got %v, %v; want 6, nil", got, err)
	}
	spread := redisrpc.NewEndpoint[[]int, int]("sum", redisrpc.WithPositionalArgs())
	if got, err := redisrpc.Call(ctx, c, spread, []int{4, 5}); err != nil || got != 9 {
		t.Errorf("sum spread: got %v, %v; want 9, nil", got, err)
	}
	if got, err := redisrpc.Call(ctx, c, spread, []int{7}); err != nil || got != 7 {
		t.Errorf("sum spread of one: got %v, %v; want 7, nil", got, err)
	}
	named := redisrpc.NewEndpoint[point, point]("norm", redisrpc.WithNamedArgs())
	if got, err := redisrpc.Call(ctx, c, named, point{3, 4}); err != nil || got != (point{4, 3}) {
		t.Errorf("norm named: got %v, %v; want {4 3}, nil", got, err)
	}
	if got, err := redisrpc.Call(ctx, c, ping, struct{}{}); err != nil || got != "pong" {
		t.Errorf("ping: got %q, %v; want pong, nil", got, err)
	}
	if got, err := redisrpc.Call(ctx, c, maybe, ""); err != nil || got != nil {
		t.Errorf("maybe(\"\"): got %v, %v; want nil, nil", got, err)
	}
}

// TestArgumentMapping sends the classic calling conventions as raw requests.
func TestArgumentMapping(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	echo := func(_ context.Context, v json.RawMessage) (json.RawMessage, error) { return v, nil }
	redisrpc.Handle(mux, redisrpc.NewEndpoint[json.RawMessage, json.RawMessage]("echo"), echo)
	redisrpc.Handle(mux, redisrpc.NewEndpoint[point, point]("point"), func(_ context.Context, p point) (point, error) { return p, nil })
	redisrpc.Handle(mux, redisrpc.NewEndpoint[[2]int, int]("move"), func(_ context.Context, a [2]int) (int, error) { return a[0]*10 + a[1], nil })
	redisrpc.Handle(mux, redisrpc.NewEndpoint[float64, float64]("num"), func(_ context.Context, x float64) (float64, error) { return x, nil })
	serve(t, mux)

	tests := []struct {
		name, call, want string
	}{
		{"no arguments", `{"name":"echo"}`, `{"return_value":null}`},
		{"one positional", `{"name":"echo","args":[5]}`, `{"return_value":5}`},
		{"named", `{"name":"point","kwargs":{"x":1,"y":2}}`, `{"return_value":{"x":1,"y":2}}`},
		{"several positional", `{"name":"move","args":[3,4]}`, `{"return_value":34}`},
		{"no arguments into a struct", `{"name":"point"}`, `{"return_value":{"x":0,"y":0}}`},
		{"wrong type", `{"name":"num","args":["five"]}`, `invalid_argument`},
		{"too many for an array", `{"name":"move","args":[1,2,3]}`, `{"return_value":12}`},
		{"positional and named", `{"name":"num","args":[1],"kwargs":{"x":1}}`, `invalid_argument`},
		{"args not an array", `{"name":"num","args":{"x":1}}`, `invalid_argument`},
		{"no function name", `{"args":[1]}`, `invalid_argument`},
		{"unknown function", `{"name":"nope"}`, `not_found`},
	}
	for i, tt := range tests {
		resp := fmt.Sprintf("%s:rpc:map%d", q, i)
		got := rawCall(t, q, resp, fmt.Sprintf(`{"function_call":%s,"response_queue":%q}`, tt.call, resp), 5*time.Second)
		if strings.HasPrefix(tt.want, "{") {
			if got != tt.want {
				t.Errorf("%s: got %s, want %s", tt.name, got, tt.want)
			}
			continue
		}
		var r struct {
			Exception string `json:"exception"`
			Code      string `json:"code"`
		}
		if err := json.Unmarshal([]byte(got), &r); err != nil || r.Code != tt.want || r.Exception == "" {
			t.Errorf("%s: got %s, want an exception with code %s", tt.name, got, tt.want)
		}
	}
}

func TestRemoteErrors(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	div := redisrpc.NewEndpoint[float64, float64]("div")
	redisrpc.Handle(mux, div, func(_ context.Context, x float64) (float64, error) {
		switch x {
		case 0:
			return 0, errors.New("division by zero")
		case -1:
			return 0, redisrpc.NewError("overflow", "too big")
		case -2:
			panic("boom")
		}
		return 1 / x, nil
	})
	serve(t, mux)
	c := newClient(t, q)
	ctx := timeout(t, 10*time.Second)

	tests := []struct {
		name     string
		call     func() error
		wantCode redisrpc.Code
		wantMsg  string
	}{
		{"plain error", func() error { _, err := redisrpc.Call(ctx, c, div, 0); return err }, "", "division by zero"},
		{"own code", func() error { _, err := redisrpc.Call(ctx, c, div, -1); return err }, "overflow", "too big"},
		{"panic", func() error { _, err := redisrpc.Call(ctx, c, div, -2); return err }, redisrpc.CodeInternal, "internal error in div"},
		{"not found", func() error {
			_, err := redisrpc.Call(ctx, c, redisrpc.NewEndpoint[float64, float64]("mod"), 1)
			return err
		}, redisrpc.CodeNotFound, `no function "mod"`},
		{"invalid argument", func() error {
			_, err := redisrpc.Call(ctx, c, redisrpc.NewEndpoint[string, float64]("div"), "x")
			return err
		}, redisrpc.CodeInvalidArgument, ""},
	}
	for _, tt := range tests {
		err := tt.call()
		var rerr *redisrpc.Error
		if !errors.As(err, &rerr) {
			t.Errorf("%s: got %v, want a *redisrpc.Error", tt.name, err)
			continue
		}
		if rerr.Code != tt.wantCode || redisrpc.CodeOf(err) != tt.wantCode {
			t.Errorf("%s: got code %q, want %q", tt.name, rerr.Code, tt.wantCode)
		}
		if tt.wantMsg != "" && rerr.Message != tt.wantMsg {
			t.Errorf("%s: got message %q, want %q", tt.name, rerr.Message, tt.wantMsg)
		}
	}
	// The server survived the panic.
	if got, err := redisrpc.Call(ctx, c, div, 4); err != nil || got != 0.25 {
		t.Errorf("div(4) after a panic: got %v, %v; want 0.25, nil", got, err)
	}
}

func TestDeadline(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	type seen struct {
		deadline time.Time
		hasDL    bool
		err      error
	}
	seenc := make(chan seen, 1)
	wait := redisrpc.NewEndpoint[string, string]("wait")
	redisrpc.Handle(mux, wait, func(ctx context.Context, mode string) (string, error) {
		dl, ok := ctx.Deadline()
		if mode == "block" {
			<-ctx.Done()
		}
		seenc <- seen{dl, ok, ctx.Err()}
		return mode, ctx.Err()
	})
	serve(t, mux)
	c := newClient(t, q)

	// The deadline travels with the call.
	dl := time.Now().Add(5 * time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), dl)
	defer cancel()
	if _, err := redisrpc.Call(ctx, c, wait, "now"); err != nil {
		t.Fatal(err)
	}
	s := <-seenc
	if !s.hasDL || s.deadline.Sub(dl).Abs() > time.Millisecond {
		t.Errorf("handler deadline: got %v (set %v), want %v", s.deadline, s.hasDL, dl)
	}

	// The handler's context ends at the deadline and Call returns by then.
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := redisrpc.Call(ctx, c, wait, "block")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Call: got %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Call returned after %v, want about 300ms", d)
	}
	if s := <-seenc; !errors.Is(s.err, context.DeadlineExceeded) {
		t.Errorf("handler context: got %v, want context.DeadlineExceeded", s.err)
	}
}

func TestExpiredRequestNotRun(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	var runs atomic.Int32
	redisrpc.Handle(mux, redisrpc.NewEndpoint[string, string]("run"), func(_ context.Context, s string) (string, error) {
		runs.Add(1)
		return s, nil
	})
	resp := q + ":rpc:late"
	past := time.Now().Add(-time.Second).UnixMilli()
	ctx := timeout(t, 10*time.Second)
	late := fmt.Sprintf(`{"function_call":{"name":"run","args":["late"]},"response_queue":%q,"deadline":%d}`, resp, past)
	if err := rc.Do(ctx, rc.B().Rpush().Key(q).Element(late).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	serve(t, mux)
	// Requests are taken in order: once the next one is answered, the late one was seen.
	ontime := newClient(t, q)
	if _, err := redisrpc.Call(ctx, ontime, redisrpc.NewEndpoint[string, string]("run"), "ontime"); err != nil {
		t.Fatal(err)
	}
	if got := runs.Load(); got != 1 {
		t.Errorf("handler runs: got %d, want 1 (the late request must not run)", got)
	}
	if n, err := rc.Do(ctx, rc.B().Llen().Key(resp).Build()).AsInt64(); err != nil || n != 0 {
		t.Errorf("responses to the late request: got %d, %v; want 0", n, err)
	}
}

func TestCallWithoutServerReturnsAtDeadline(t *testing.T) {
	t.Parallel()
	c := newClient(t, newQueue(t))
	ctx := timeout(t, 200*time.Millisecond)
	start := time.Now()
	_, err := redisrpc.Call(ctx, c, redisrpc.NewEndpoint[int, int]("f"), 1)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Call returned after %v, want about 200ms", d)
	}
}

func TestMalformedRequests(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	echo := redisrpc.NewEndpoint[string, string]("echo")
	redisrpc.Handle(mux, echo, func(_ context.Context, s string) (string, error) { return s, nil })
	serve(t, mux)
	ctx := timeout(t, 10*time.Second)

	outside := q + ":elsewhere"
	dropped := []string{
		`not json`,
		`{"function_call":`,
		`[1,2,3]`,
		`{"function_call":{"name":"echo","args":["x"]}}`,
		fmt.Sprintf(`{"function_call":{"name":"echo","args":["x"]},"response_queue":%q}`, outside),
		fmt.Sprintf(`{"function_call":{"name":"echo","args":["x"]},"response_queue":%q}`, q),
		fmt.Sprintf(`{"function_call":{"name":"echo","args":["x"]},"response_queue":%q}`, q+":rpc:"),
		`{"function_call":{"name":"echo","args":["x"]},"response_queue":"other:rpc:x"}`,
		`{"function_call":{"name":"echo","args":["x"]},"response_queue":5}`,
	}
	for _, body := range dropped {
		if err := rc.Do(ctx, rc.B().Rpush().Key(q).Element(body).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	// The server still answers, and wrote nowhere else.
	c := newClient(t, q)
	if got, err := redisrpc.Call(ctx, c, echo, "alive"); err != nil || got != "alive" {
		t.Fatalf("echo after bad input: got %q, %v; want alive, nil", got, err)
	}
	for _, key := range []string{outside, "other:rpc:x", q + ":rpc:"} {
		if n, err := rc.Do(ctx, rc.B().Exists().Key(key).Build()).AsInt64(); err != nil || n != 0 {
			t.Errorf("key %s: got exists=%d, %v; want 0", key, n, err)
		}
	}
	if n, err := rc.Do(ctx, rc.B().Llen().Key(q).Build()).AsInt64(); err != nil || n != 0 {
		t.Errorf("requests left in the queue: got %d, %v; want 0", n, err)
	}
}

func TestConcurrencyBound(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	const limit, calls = 3, 12
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithConcurrency(limit))
	var now, peak atomic.Int32
	work := redisrpc.NewEndpoint[int, int]("work")
	redisrpc.Handle(mux, work, func(_ context.Context, x int) (int, error) {
		n := now.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(50 * time.Millisecond)
		now.Add(-1)
		return x, nil
	})
	serve(t, mux)
	c := newClient(t, q)
	ctx := timeout(t, 20*time.Second)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			if got, err := redisrpc.Call(ctx, c, work, i); err != nil || got != i {
				t.Errorf("work(%d): got %d, %v", i, got, err)
			}
		})
	}
	wg.Wait()
	if got := peak.Load(); got != limit {
		t.Errorf("handlers running at once: got %d, want %d", got, limit)
	}
}

func TestManyConcurrentCalls(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	double := redisrpc.NewEndpoint[int, int]("double")
	redisrpc.Handle(mux, double, func(_ context.Context, x int) (int, error) { return 2 * x, nil })
	serve(t, mux)
	c := newClient(t, q)
	ctx := timeout(t, 30*time.Second)
	var wg sync.WaitGroup
	for i := range 1000 {
		wg.Go(func() {
			if got, err := redisrpc.Call(ctx, c, double, i); err != nil || got != 2*i {
				t.Errorf("double(%d): got %d, %v; want %d", i, got, err, 2*i)
			}
		})
	}
	wg.Wait()
}

func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	started, release := make(chan struct{}), make(chan struct{})
	slow := redisrpc.NewEndpoint[string, string]("slow")
	redisrpc.Handle(mux, slow, func(ctx context.Context, s string) (string, error) {
		close(started)
		<-release
		return s, ctx.Err()
	})
	served := make(chan error, 1)
	go func() { served <- mux.Serve(context.Background()) }()
	c := newClient(t, q)
	ctx := timeout(t, 10*time.Second)
	called := make(chan error, 1)
	go func() {
		got, err := redisrpc.Call(ctx, c, slow, "done")
		if err == nil && got != "done" {
			err = fmt.Errorf("got %q, want done", got)
		}
		called <- err
	}()
	<-started
	shut := make(chan error, 1)
	go func() { shut <- mux.Shutdown(ctx) }()

	// Shutdown stops taking requests: one pushed now stays queued.
	time.Sleep(1500 * time.Millisecond) // longer than a poll, so the loop has stopped
	if err := rc.Do(ctx, rc.B().Rpush().Key(q).Element("queued").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while a handler ran", err)
	case err := <-served:
		t.Fatalf("Serve returned %v while a handler ran", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: got %v, want nil", err)
	}
	if err := <-served; !errors.Is(err, redisrpc.ErrServerClosed) {
		t.Errorf("Serve: got %v, want ErrServerClosed", err)
	}
	if err := <-called; err != nil {
		t.Errorf("the call in flight: got %v, want its result", err)
	}
	if n, err := rc.Do(ctx, rc.B().Llen().Key(q).Build()).AsInt64(); err != nil || n != 1 {
		t.Errorf("queue after Shutdown: got %d, %v; want 1 request left", n, err)
	}
	if err := mux.Serve(ctx); !errors.Is(err, redisrpc.ErrServerClosed) {
		t.Errorf("Serve after Shutdown: got %v, want ErrServerClosed", err)
	}
}

func TestShutdownGivesUp(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	started, handlerErr := make(chan struct{}), make(chan error, 1)
	stuck := redisrpc.NewEndpoint[string, string]("stuck")
	redisrpc.Handle(mux, stuck, func(ctx context.Context, s string) (string, error) {
		close(started)
		<-ctx.Done()
		handlerErr <- ctx.Err()
		return "", ctx.Err()
	})
	served := make(chan error, 1)
	go func() { served <- mux.Serve(context.Background()) }()
	c := newClient(t, q)
	go redisrpc.Call(timeout(t, 10*time.Second), c, stuck, "x")
	<-started
	if err := mux.Shutdown(timeout(t, 100*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: got %v, want context.DeadlineExceeded", err)
	}
	if err := <-handlerErr; !errors.Is(err, context.Canceled) {
		t.Errorf("handler context: got %v, want context.Canceled", err)
	}
	if err := <-served; !errors.Is(err, redisrpc.ErrServerClosed) {
		t.Errorf("Serve: got %v, want ErrServerClosed", err)
	}
}

func TestServeContextEnds(t *testing.T) {
	t.Parallel()
	mux := redisrpc.NewMux(rc, newQueue(t), redisrpc.WithLogger(quiet))
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- mux.Serve(ctx) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-served:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Serve: got %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

func TestMeta(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	trace := redisrpc.NewEndpoint[struct{}, string]("trace")
	redisrpc.Handle(mux, trace, func(ctx context.Context, _ struct{}) (string, error) {
		return redisrpc.MetaFromContext(ctx)["traceparent"], nil
	})
	serve(t, mux)
	c := newClient(t, q)
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	ctx := redisrpc.ContextWithMeta(timeout(t, 10*time.Second), map[string]string{"traceparent": tp})
	if got, err := redisrpc.Call(ctx, c, trace, struct{}{}); err != nil || got != tp {
		t.Errorf("got %q, %v; want %q", got, err, tp)
	}
}

// TestClassicServerWithoutOption: a classic server answers without id; the
// call fails at once with ErrClassicServer instead of waiting.
func TestClassicServerWithoutOption(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	ctx := timeout(t, 10*time.Second)
	go func() { // a classic server, by hand
		kv, err := rc.Do(ctx, rc.B().Blpop().Key(q).Timeout(5).Build()).AsStrSlice()
		if err != nil {
			return
		}
		var req struct {
			ResponseQueue string `json:"response_queue"`
		}
		json.Unmarshal([]byte(kv[1]), &req)
		rc.Do(ctx, rc.B().Rpush().Key(req.ResponseQueue).Element(`{"return_value": 1}`).Build())
	}()
	c := newClient(t, q)
	start := time.Now()
	_, err := redisrpc.Call(ctx, c, redisrpc.NewEndpoint[int, int]("f"), 1)
	if !errors.Is(err, redisrpc.ErrClassicServer) {
		t.Errorf("got %v, want ErrClassicServer", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Call took %v, want an answer as soon as the response came", d)
	}
}

// TestClassicClientMode: a Client made WithClassicServer works with a Go
// server too, and sends no id.
func TestClassicClientMode(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	add := redisrpc.NewEndpoint[float64, float64]("add")
	redisrpc.Handle(mux, add, func(_ context.Context, x float64) (float64, error) { return x + 1, nil })
	redisrpc.Handle(mux, redisrpc.NewEndpoint[string, string]("block"), func(ctx context.Context, _ string) (string, error) {
		<-ctx.Done()
		return "", ctx.Err()
	})
	serve(t, mux)
	c := newClient(t, q, redisrpc.WithClassicServer())
	if got, err := redisrpc.Call(timeout(t, 10*time.Second), c, add, 1); err != nil || got != 2 {
		t.Errorf("add(1): got %v, %v; want 2, nil", got, err)
	}
	if _, err := redisrpc.Call(timeout(t, 10*time.Second), c, redisrpc.NewEndpoint[float64, float64]("nope"), 1); redisrpc.CodeOf(err) != redisrpc.CodeNotFound {
		t.Errorf("nope(1): got %v, want not_found", err)
	}
	start := time.Now()
	if _, err := redisrpc.Call(timeout(t, 300*time.Millisecond), c, redisrpc.NewEndpoint[string, string]("block"), "x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("block: got %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("block returned after %v, want about 300ms", d)
	}
}

// TestRedisGone: with Redis unreachable, calls fail with an error instead of
// hanging, and Serve keeps trying until stopped.
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
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Call: got %v, want a Redis error", err)
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

func TestMisuse(t *testing.T) {
	t.Parallel()
	mux := redisrpc.NewMux(rc, newQueue(t))
	e := redisrpc.NewEndpoint[int, int]("f")
	redisrpc.Handle(mux, e, func(_ context.Context, x int) (int, error) { return x, nil })
	tests := []struct {
		name string
		f    func()
	}{
		{"duplicate", func() {
			redisrpc.Handle(mux, e, func(_ context.Context, x int) (int, error) { return x, nil })
		}},
		{"nil handler", func() { redisrpc.Handle(mux, redisrpc.NewEndpoint[int, int]("g"), nil) }},
		{"zero endpoint", func() {
			redisrpc.Handle(mux, redisrpc.Endpoint[int, int]{}, func(_ context.Context, x int) (int, error) { return x, nil })
		}},
		{"empty endpoint name", func() { redisrpc.NewEndpoint[int, int]("") }},
		{"nil client", func() { redisrpc.NewMux(nil, "q") }},
		{"empty queue", func() { redisrpc.NewClient(rc, "") }},
	}
	for _, tt := range tests {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: got no panic, want one", tt.name)
				}
			}()
			tt.f()
		}()
	}
	c := newClient(t, newQueue(t))
	if _, err := redisrpc.Call(context.Background(), c, redisrpc.Endpoint[int, int]{}, 1); err == nil {
		t.Error("Call of a zero Endpoint: got nil error, want one")
	}
	named := redisrpc.NewEndpoint[int, int]("f", redisrpc.WithNamedArgs())
	if _, err := redisrpc.Call(context.Background(), c, named, 1); err == nil {
		t.Error("WithNamedArgs with an int: got nil error, want one")
	}
	c.Close()
	if _, err := redisrpc.Call(context.Background(), c, e, 1); !errors.Is(err, redisrpc.ErrClientClosed) {
		t.Errorf("Call after Close: got %v, want ErrClientClosed", err)
	}
}

func TestErrorMatching(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("wrapped: %w", redisrpc.NewError(redisrpc.CodeDeadlineExceeded, "too late"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Error("a deadline_exceeded *Error: got no match for context.DeadlineExceeded, want one")
	}
	if got := redisrpc.CodeOf(fmt.Errorf("x: %w", context.DeadlineExceeded)); got != redisrpc.CodeDeadlineExceeded {
		t.Errorf("CodeOf(DeadlineExceeded): got %q, want %q", got, redisrpc.CodeDeadlineExceeded)
	}
	if got := redisrpc.CodeOf(errors.New("x")); got != "" {
		t.Errorf("CodeOf(plain error): got %q, want empty", got)
	}
	if got, want := redisrpc.NewError("", "boom").Error(), "boom"; got != want {
		t.Errorf("Error(): got %q, want %q", got, want)
	}
}

// Example serves a calculator's add and calls it.
func Example() {
	var Add = redisrpc.NewEndpoint[float64, float64]("add")

	ctx := context.Background()
	mux := redisrpc.NewMux(rc, "example:calc") // rc is a rueidis.Client
	var total float64
	redisrpc.Handle(mux, Add, func(ctx context.Context, x float64) (float64, error) {
		total += x
		return total, nil
	})
	go mux.Serve(ctx)
	defer mux.Shutdown(ctx)

	c := redisrpc.NewClient(rc, "example:calc")
	defer c.Close()
	callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	sum, err := redisrpc.Call(callCtx, c, Add, 5)
	fmt.Println(sum, err)
	// Output: 5 <nil>
}

// ExampleCodeOf tells a missing function from other failures.
func ExampleCodeOf() {
	c := redisrpc.NewClient(rc, "example:nobody")
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := redisrpc.Call(ctx, c, redisrpc.NewEndpoint[int, int]("f"), 1)
	switch redisrpc.CodeOf(err) {
	case redisrpc.CodeNotFound:
		fmt.Println("no such function")
	case redisrpc.CodeDeadlineExceeded:
		fmt.Println("no answer in time")
	}
	// Output: no answer in time
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
	serve(t, mux)
	c := redisrpc.NewClient(own, q, redisrpc.WithLogger(quiet))
	defer c.Close()
	ctx := timeout(t, 60*time.Second)
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

// TestDuplicateResponsesIgnored: of two responses for one id, as at-least-once
// delivery may produce, the call gets one and the other is dropped: it never
// reaches a later call.
func TestDuplicateResponsesIgnored(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() { // a server, by hand, that answers every request twice
		defer close(done)
		for ctx.Err() == nil {
			kv, err := rc.Do(ctx, rc.B().Blpop().Key(q).Timeout(1).Build()).AsStrSlice()
			if err != nil {
				continue
			}
			var req struct {
				ResponseQueue string `json:"response_queue"`
				ID            string `json:"id"`
				FunctionCall  struct {
					Args []int `json:"args"`
				} `json:"function_call"`
			}
			json.Unmarshal([]byte(kv[1]), &req)
			for i := range 2 {
				resp := fmt.Sprintf(`{"id":%q,"return_value":%d}`, req.ID, req.FunctionCall.Args[0]*10+i)
				rc.Do(ctx, rc.B().Rpush().Key(req.ResponseQueue).Element(resp).Build())
			}
		}
	}()
	c := newClient(t, q)
	f := redisrpc.NewEndpoint[int, int]("f")
	for i := 1; i <= 3; i++ {
		// Two receivers pop the response list, so either response may come first.
		if got, err := redisrpc.Call(ctx, c, f, i); err != nil || got/10 != i {
			t.Errorf("call %d: got %d, %v; want one of its own responses, %d or %d", i, got, err, i*10, i*10+1)
		}
	}
}

// TestShards: a Client with WithShards spreads calls evenly over the lists,
// a Mux with the same setting serves them all, and the plain queue still
// serves classic clients.
// TestShards: requests spread evenly over the shards, whatever braces the
// queue name holds, and a server of the same shards serves them all.
func TestShards(t *testing.T) {
	t.Parallel()
	for _, name := range []func(q string) string{
		func(q string) string { return q },
		func(q string) string { return "{" + q + "}" },   // a hash tag, as Cluster users write
		func(q string) string { return q + ":{eu}" },     // a hash tag inside
		func(q string) string { return q + "}" },         // a brace that opens no tag
		func(q string) string { return "{}" + q + "{x" }, // an empty tag and a lone brace
	} {
		q := name(newQueue(t))
		t.Run(q, func(t *testing.T) {
			t.Parallel()
			testShards(t, q)
		})
	}
}

func testShards(t *testing.T, q string) {
	const shards, calls = 3, 9
	c := newClient(t, q, redisrpc.WithShards(shards))
	double := redisrpc.NewEndpoint[int, int]("double")
	ctx := timeout(t, 20*time.Second)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			if got, err := redisrpc.Call(ctx, c, double, i); err != nil || got != 2*i {
				t.Errorf("double(%d): got %d, %v; want %d", i, got, err, 2*i)
			}
		})
	}
	// Before any server runs, the requests wait spread over the shards:
	// every key holding q's name is one of its request lists.
	var lens []int64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		keys, err := rc.Do(ctx, rc.B().Keys().Pattern("*"+strings.Trim(q, "{}")+"*").Build()).AsStrSlice()
		if err != nil {
			t.Fatal(err)
		}
		lens = lens[:0]
		var total int64
		for _, key := range keys {
			n, _ := rc.Do(ctx, rc.B().Llen().Key(key).Build()).AsInt64()
			lens = append(lens, n)
			total += n
		}
		if total == calls {
			break
		}
	}
	if len(lens) != shards {
		t.Errorf("request lists: got %d, want %d", len(lens), shards)
	}
	for i, n := range lens {
		if n != calls/shards {
			t.Errorf("requests on shard %d: got %d, want %d (all: %v)", i, n, calls/shards, lens)
		}
	}
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithShards(shards))
	redisrpc.Handle(mux, double, func(_ context.Context, x int) (int, error) { return 2 * x, nil })
	serve(t, mux)
	wg.Wait()
	classic := newClient(t, q, redisrpc.WithClassicServer())
	if got, err := redisrpc.Call(ctx, classic, double, 21); err != nil || got != 42 {
		t.Errorf("a classic client on the plain queue: got %d, %v; want 42", got, err)
	}
}

// ExampleNewEndpoint_namedArgs calls a function that takes keyword arguments,
// as classic Python servers define them: greet(name="Ann", times=2).
func ExampleNewEndpoint_namedArgs() {
	type Greeting struct {
		Name  string `json:"name"`
		Times int    `json:"times"`
	}
	greet := redisrpc.NewEndpoint[Greeting, string]("greet", redisrpc.WithNamedArgs())

	mux := redisrpc.NewMux(rc, "example:greeter")
	redisrpc.Handle(mux, greet, func(_ context.Context, g Greeting) (string, error) {
		return strings.Repeat("hi "+g.Name+"! ", g.Times), nil
	})
	go mux.Serve(context.Background())
	defer mux.Shutdown(context.Background())

	c := redisrpc.NewClient(rc, "example:greeter")
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := redisrpc.Call(ctx, c, greet, Greeting{Name: "Ann", Times: 2})
	fmt.Println(s, err)
	// Output: hi Ann! hi Ann!  <nil>
}

// ExampleMux_Shutdown stops a server gracefully: no new requests are taken,
// running handlers finish, and Serve returns ErrServerClosed.
func ExampleMux_Shutdown() {
	mux := redisrpc.NewMux(rc, "example:shutdown")
	redisrpc.Handle(mux, redisrpc.NewEndpoint[int, int]("id"), func(_ context.Context, x int) (int, error) { return x, nil })
	served := make(chan error, 1)
	go func() { served <- mux.Serve(context.Background()) }()

	// Typically on SIGTERM, with a bound on how long handlers may take to finish.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := mux.Shutdown(ctx); err != nil {
		fmt.Println("handlers did not finish in time:", err)
	}
	fmt.Println(<-served)
	// Output: redisrpc: server closed
}

// ExampleWithAtLeastOnce serves a queue so that no request is lost when a
// server dies: its requests go to another server. Handlers may then run twice
// for one call, so this one is idempotent: it sets, it does not add.
func ExampleWithAtLeastOnce() {
	type Setting struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	}
	set := redisrpc.NewEndpoint[Setting, bool]("set")
	var (
		mu       sync.Mutex
		settings = map[string]string{}
	)
	mux := redisrpc.NewMux(rc, "example:settings", redisrpc.WithAtLeastOnce(), redisrpc.WithHeartbeat(5*time.Second))
	redisrpc.Handle(mux, set, func(_ context.Context, s Setting) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		settings[s.Key] = s.Value
		return true, nil
	})
	go mux.Serve(context.Background())
	defer mux.Shutdown(context.Background())

	c := redisrpc.NewClient(rc, "example:settings")
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fmt.Println(redisrpc.Call(ctx, c, set, Setting{"color", "blue"}))
	// Output: true <nil>
}

// ExampleContextWithMeta sends a W3C traceparent with a call; the handler
// reads it with MetaFromContext.
func ExampleContextWithMeta() {
	whoami := redisrpc.NewEndpoint[struct{}, string]("trace")
	mux := redisrpc.NewMux(rc, "example:meta")
	redisrpc.Handle(mux, whoami, func(ctx context.Context, _ struct{}) (string, error) {
		return redisrpc.MetaFromContext(ctx)["traceparent"], nil
	})
	go mux.Serve(context.Background())
	defer mux.Shutdown(context.Background())

	c := redisrpc.NewClient(rc, "example:meta")
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx = redisrpc.ContextWithMeta(ctx, map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
	fmt.Println(redisrpc.Call(ctx, c, whoami, struct{}{}))
	// Output: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 <nil>
}
