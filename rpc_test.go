package redisrpc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/goleak"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/internal/keys"
	"github.com/redisrpc/redisrpc/internal/localredis"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

// rc is the rueidis.Client of the examples: REDIS_URL, else redis-server
// from PATH, else the embedded server. Tests get their own from
// redisrpctest.Redis.
var rc rueidis.Client

func TestMain(m *testing.M) {
	redis, c, err := localredis.StartWithClient(localredis.Any)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rc = c
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
func newQueue(t *testing.T) string { return redisrpctest.Queue(t) }

// serve serves mux until the test ends, then shuts it down and checks that
// Serve returned ErrServerClosed.
func serve(t *testing.T, mux *redisrpc.Mux) { t.Helper(); redisrpctest.Serve(t, mux) }

func newClient(t *testing.T, rc rueidis.Client, queue string, opts ...redisrpc.ClientOption) *redisrpc.Client {
	c := redisrpc.NewClient(rc, queue, append([]redisrpc.ClientOption{redisrpc.WithLogger(quiet)}, opts...)...)
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
func rawCall(t *testing.T, rc rueidis.Client, queue, respQueue, body string, wait time.Duration) string {
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
	rc := redisrpctest.Redis(t)
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
	c := newClient(t, rc, q)
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
	rc := redisrpctest.Redis(t)
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
		{"one named into a number", `{"name":"num","kwargs":{"number":5}}`, `{"return_value":5}`},
		{"one named into a struct", `{"name":"point","kwargs":{"x":3}}`, `{"return_value":{"x":3,"y":0}}`},
		{"one named into raw JSON", `{"name":"echo","kwargs":{"x":3}}`, `{"return_value":{"x":3}}`},
		{"two named into a number", `{"name":"num","kwargs":{"a":1,"b":2}}`, `invalid_argument`},
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
		got := rawCall(t, rc, q, resp, fmt.Sprintf(`{"function_call":%s,"response_queue":%q}`, tt.call, resp), 5*time.Second)
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

// stock is the details of an out-of-stock error.
type stock struct {
	Item string `json:"item"`
	Left int    `json:"left"`
}

// TestRemoteErrors: what a caller sees of each kind of handler failure, as
// the package documentation lists it, with and without WithRedactedErrors.
func TestRemoteErrors(t *testing.T) {
	t.Parallel()
	for _, redact := range []bool{false, true} {
		t.Run(fmt.Sprintf("redacted=%v", redact), func(t *testing.T) {
			t.Parallel()
			testRemoteErrors(t, redact)
		})
	}
}

func testRemoteErrors(t *testing.T, redact bool) {
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	opts := []redisrpc.MuxOption{redisrpc.WithLogger(quiet)}
	if redact {
		opts = append(opts, redisrpc.WithRedactedErrors())
	}
	mux := redisrpc.NewMux(rc, q, opts...)
	div := redisrpc.NewEndpoint[float64, float64]("div")
	outOfStock := redisrpc.NewError("out_of_stock", "not enough stock").WithDetails(stock{"apple", 2})
	redisrpc.Handle(mux, div, func(ctx context.Context, x float64) (float64, error) {
		switch x {
		case 0:
			return 0, errors.New("division by zero")
		case -1:
			return 0, redisrpc.NewError("overflow", "too big")
		case -2:
			panic("boom")
		case -3:
			return 0, fmt.Errorf("reserving: %w", outOfStock)
		case -4:
			<-ctx.Done()
			return 0, ctx.Err()
		case -5:
			return 0, redisrpc.NewError("bad", "details that do not encode").WithDetails(func() {})
		case -6: // a downstream call's own timeout, long before the caller's
			dctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			defer cancel()
			<-dctx.Done()
			return 0, fmt.Errorf(`Get "http://inventory/stock?token=s3cr3t": %w`, dctx.Err())
		case -7: // a downstream server's verdict on the handler's own deadline
			return 0, redisrpc.NewError(redisrpc.CodeDeadlineExceeded, "inventory: context deadline exceeded")
		case -8: // the caller's deadline, with a secret in the text
			<-ctx.Done()
			return 0, fmt.Errorf("token=s3cr3t: %w", ctx.Err())
		}
		return 1 / x, nil
	})
	serve(t, mux)
	c := newClient(t, rc, q)
	ctx := timeout(t, 10*time.Second)
	call := func(e redisrpc.Endpoint[float64, float64], x float64) func() error {
		return func() error { _, err := redisrpc.Call(ctx, c, e, x); return err }
	}
	plainCode, plainMsg := redisrpc.Code(""), "division by zero"
	if redact {
		plainCode, plainMsg = redisrpc.CodeInternal, "internal error"
	}
	tests := []struct {
		name     string
		call     func() error
		wantCode redisrpc.Code
		wantMsg  string
	}{
		{"plain error", call(div, 0), plainCode, plainMsg},
		{"own code", call(div, -1), "overflow", "too big"},
		{"panic", call(div, -2), redisrpc.CodeInternal, "internal error in div"},
		{"wrapped *Error with details", call(div, -3), "out_of_stock", "not enough stock"},
		{"details that do not encode", call(div, -5), redisrpc.CodeInternal, ""},
		{"not found", call(redisrpc.NewEndpoint[float64, float64]("mod"), 1), redisrpc.CodeNotFound, `no function "mod"`},
		{"invalid argument", func() error {
			_, err := redisrpc.Call(ctx, c, redisrpc.NewEndpoint[string, float64]("div"), "x")
			return err
		}, redisrpc.CodeInvalidArgument, ""},
		{"the handler's context.DeadlineExceeded", func() error {
			ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			_, err := redisrpc.Call(ctx, c, div, -4)
			return err
		}, redisrpc.CodeDeadlineExceeded, ""},
	}
	ownDeadline := "a deadline of the handler's own passed, not the caller's"
	tests = append(tests, []struct {
		name     string
		call     func() error
		wantCode redisrpc.Code
		wantMsg  string
	}{
		{"a downstream timeout", call(div, -6), redisrpc.CodeUnavailable, ""},
		{"a downstream deadline_exceeded", call(div, -7), redisrpc.CodeUnavailable, ownDeadline + ": inventory: context deadline exceeded"},
	}...)
	for _, tt := range tests {
		err := tt.call()
		if strings.HasPrefix(tt.name, "a downstream") {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s: %v matches context.DeadlineExceeded, want not: the caller's deadline is seconds away", tt.name, err)
			}
			if redact && strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("%s: got %q, want the handler's text redacted", tt.name, err)
			}
		}
		if redisrpc.CodeOf(err) != tt.wantCode {
			t.Errorf("%s: got %v, code %q; want code %q", tt.name, err, redisrpc.CodeOf(err), tt.wantCode)
		}
		var rerr *redisrpc.Error
		if tt.wantMsg != "" && (!errors.As(err, &rerr) || rerr.Message != tt.wantMsg) {
			t.Errorf("%s: got %v, want an *Error with message %q", tt.name, err, tt.wantMsg)
		}
	}
	// The caller's own deadline passed, the handler's error wrapping it: a
	// raw caller still reads the response, redacted where asked.
	reply := q + ":rpc:raw"
	body := fmt.Sprintf(`{"function_call":{"name":"div","args":[-8]},"response_queue":%q,"id":"r","deadline":%d}`, reply, time.Now().Add(300*time.Millisecond).UnixMilli())
	raw := rawCall(t, rc, q, reply, body, 3*time.Second)
	if !strings.Contains(raw, `"code":"deadline_exceeded"`) || redact == strings.Contains(raw, "s3cr3t") {
		t.Errorf("the caller's deadline passed: got %s; want deadline_exceeded, the handler's text redacted: %v", raw, redact)
	}
	_, err := redisrpc.Call(ctx, c, div, -3)
	if got, ok := redisrpc.ErrorDetails[stock](err); !ok || got != (stock{"apple", 2}) {
		t.Errorf("ErrorDetails of out_of_stock: got %+v, %v; want {apple 2}, true", got, ok)
	}
	if want := `redisrpc: div: out_of_stock: not enough stock`; err.Error() != want {
		t.Errorf("error text: got %q, want %q", err, want)
	}
	if _, ok := redisrpc.ErrorDetails[stock](errors.New("x")); ok {
		t.Error("ErrorDetails of a plain error: got ok, want false")
	}
	// The server survived the panic.
	if got, err := redisrpc.Call(ctx, c, div, 4); err != nil || got != 0.25 {
		t.Errorf("div(4) after a panic: got %v, %v; want 0.25, nil", got, err)
	}
}

func TestDeadline(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
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
	c := newClient(t, rc, q)

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
	rc := redisrpctest.Redis(t)
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
	ontime := newClient(t, rc, q)
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
	rc := redisrpctest.Redis(t)
	c := newClient(t, rc, newQueue(t))
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
	rc := redisrpctest.Redis(t)
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
	c := newClient(t, rc, q)
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
	rc := redisrpctest.Redis(t)
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
	c := newClient(t, rc, q)
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

// TestFewSlotsManyPops: a server with fewer handler slots than pops (many
// shards, or the inbox's pop beside the queue's at least once) serves each
// call at once when idle: a pop waiting in Redis holds no slot, so pops
// without one wait there too, and none starves.
func TestFewSlotsManyPops(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		shards int
		opts   []redisrpc.MuxOption
	}{
		{"8 shards, 2 slots", 8, []redisrpc.MuxOption{redisrpc.WithConcurrency(2)}},
		{"at least once, 1 slot", 1, []redisrpc.MuxOption{redisrpc.WithConcurrency(1), redisrpc.WithAtLeastOnce()}},
		{"at least once, 4 shards, 1 slot", 4, []redisrpc.MuxOption{redisrpc.WithConcurrency(1), redisrpc.WithAtLeastOnce()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rc := redisrpctest.Redis(t)
			q := newQueue(t)
			mux := redisrpc.NewMux(rc, q, append(tc.opts, redisrpc.WithLogger(quiet), redisrpc.WithShards(tc.shards))...)
			echo := redisrpc.NewEndpoint[int, int]("echo")
			redisrpc.Handle(mux, echo, func(_ context.Context, x int) (int, error) { return x, nil })
			serve(t, mux)
			c := newClient(t, rc, q, redisrpc.WithShards(tc.shards))
			for i := range 2*tc.shards + 6 {
				// A pop waits up to a second: a call that waits for a
				// slot held by an idle pop takes about that long.
				ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
				start := time.Now()
				got, err := redisrpc.Call(ctx, c, echo, i)
				cancel()
				if err != nil || got != i {
					t.Errorf("call %d: got %d, %v after %v; want %d at once", i, got, err, time.Since(start).Round(time.Millisecond), i)
				}
			}
		})
	}
}

func TestManyConcurrentCalls(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	double := redisrpc.NewEndpoint[int, int]("double")
	redisrpc.Handle(mux, double, func(_ context.Context, x int) (int, error) { return 2 * x, nil })
	serve(t, mux)
	c := newClient(t, rc, q)
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
	rc := redisrpctest.Redis(t)
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
	c := newClient(t, rc, q)
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
	rc := redisrpctest.Redis(t)
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
	c := newClient(t, rc, q)
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
	rc := redisrpctest.Redis(t)
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
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	trace := redisrpc.NewEndpoint[struct{}, string]("trace")
	redisrpc.Handle(mux, trace, func(ctx context.Context, _ struct{}) (string, error) {
		return redisrpc.IncomingMeta(ctx)["traceparent"], nil
	})
	serve(t, mux)
	c := newClient(t, rc, q)
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	ctx := redisrpc.WithOutgoingMeta(timeout(t, 10*time.Second), map[string]string{"traceparent": tp})
	if got, err := redisrpc.Call(ctx, c, trace, struct{}{}); err != nil || got != tp {
		t.Errorf("got %q, %v; want %q", got, err, tp)
	}
}

// TestClassicServerWithoutOption: a classic server answers without id; the
// call fails at once with ErrClassicServer instead of waiting.
func TestClassicServerWithoutOption(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
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
	c := newClient(t, rc, q)
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
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	add := redisrpc.NewEndpoint[float64, float64]("add")
	redisrpc.Handle(mux, add, func(_ context.Context, x float64) (float64, error) { return x + 1, nil })
	redisrpc.Handle(mux, redisrpc.NewEndpoint[string, string]("block"), func(ctx context.Context, _ string) (string, error) {
		<-ctx.Done()
		return "", ctx.Err()
	})
	serve(t, mux)
	c := newClient(t, rc, q, redisrpc.WithClassicServer())
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
func TestMisuse(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
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
	c := newClient(t, rc, newQueue(t))
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

// TestDuplicateResponsesIgnored: of two responses for one id, as at-least-once
// delivery may produce, the call gets one and the other is dropped: it never
// reaches a later call.
func TestDuplicateResponsesIgnored(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
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
	c := newClient(t, rc, q)
	f := redisrpc.NewEndpoint[int, int]("f")
	for i := 1; i <= 3; i++ {
		// Two receivers pop the response list, so either response may come first.
		if got, err := redisrpc.Call(ctx, c, f, i); err != nil || got/10 != i {
			t.Errorf("call %d: got %d, %v; want one of its own responses, %d or %d", i, got, err, i*10, i*10+1)
		}
	}
}

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
	rc := redisrpctest.Redis(t)
	const shards, calls = 3, 9
	ctx := timeout(t, 20*time.Second)
	// A server that registered 3 shards and takes nothing: calls go to the
	// shards its entry names, and wait there.
	if err := errors.Join(
		rc.Do(ctx, rc.B().Zadd().Key(keys.Leases(q)).ScoreMember().ScoreMember(float64(time.Now().Add(time.Minute).UnixMilli()), "idle").Build()).Error(),
		rc.Do(ctx, rc.B().Set().Key(keys.Server(q, "idle")).Value(`{"id":"idle","shards":3}`).Px(time.Minute).Build()).Error(),
	); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, rc, q, redisrpc.WithShards(shards))
	double := redisrpc.NewEndpoint[int, int]("double")
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			if got, err := redisrpc.Call(ctx, c, double, i); err != nil || got != 2*i {
				t.Errorf("double(%d): got %d, %v; want %d", i, got, err, 2*i)
			}
		})
	}
	// Before a server that takes them runs, the requests wait spread over
	// the shards.
	var lens []int64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		lens = lens[:0]
		var total int64
		for _, key := range keys.Shards(q, shards) {
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
	classic := newClient(t, rc, q, redisrpc.WithClassicServer())
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

// ExampleMux_ServeAndDrain is the main of a service that drains on SIGTERM:
// it stops taking requests and lets running ones finish, for up to 20
// seconds. Here the signal is simulated by cancelling the context.
func ExampleMux_ServeAndDrain() {
	mux := redisrpc.NewMux(rc, "example:drain")
	started := make(chan struct{})
	redisrpc.Handle(mux, redisrpc.NewEndpoint[int, int]("slow"), func(_ context.Context, x int) (int, error) {
		close(started)
		time.Sleep(100 * time.Millisecond) // in flight when the signal comes
		return x, nil
	})
	c := redisrpc.NewClient(rc, "example:drain")
	defer c.Close()
	answered := make(chan int)
	go func() {
		got, _ := redisrpc.Call(context.Background(), c, redisrpc.NewEndpoint[int, int]("slow"), 7)
		answered <- got
	}()

	// In a service: signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	ctx, sigterm := context.WithCancel(context.Background())
	go func() { <-started; sigterm() }()
	err := mux.ServeAndDrain(ctx, 20*time.Second)
	fmt.Println("drained:", err, "- the call in flight got", <-answered)
	// Output: drained: <nil> - the call in flight got 7
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

// ExampleWithOutgoingMeta sends a W3C traceparent with a call; the handler
// reads it with IncomingMeta.
func ExampleWithOutgoingMeta() {
	whoami := redisrpc.NewEndpoint[struct{}, string]("trace")
	mux := redisrpc.NewMux(rc, "example:meta")
	redisrpc.Handle(mux, whoami, func(ctx context.Context, _ struct{}) (string, error) {
		return redisrpc.IncomingMeta(ctx)["traceparent"], nil
	})
	go mux.Serve(context.Background())
	defer mux.Shutdown(context.Background())

	c := redisrpc.NewClient(rc, "example:meta")
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx = redisrpc.WithOutgoingMeta(ctx, map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
	fmt.Println(redisrpc.Call(ctx, c, whoami, struct{}{}))
	// Output: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 <nil>
}

var add1 = redisrpc.NewEndpoint[int, int]("add1")

// recorder is an interceptor that notes each call going in and its result
// coming out.
type recorder struct {
	mu    sync.Mutex
	notes []string
}

func (r *recorder) note(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, s)
}

func (r *recorder) interceptor(name string) redisrpc.Interceptor {
	return func(next redisrpc.CallFunc) redisrpc.CallFunc {
		return func(ctx context.Context, info *redisrpc.CallInfo, req any) (any, error) {
			r.note(fmt.Sprintf("%s> %s %s(%v)", name, info.Side, info.Function, req))
			resp, err := next(ctx, info, req)
			r.note(fmt.Sprintf("%s< %v %v", name, resp, err))
			return resp, err
		}
	}
}

type userKey struct{}

// TestInterceptors: the chains of a client and a server run in the order
// given, see the call's information and values, and can refuse a call,
// change its context, its metadata and its request.
func TestInterceptors(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	var rec recorder
	var runs atomic.Int32
	auth := func(next redisrpc.CallFunc) redisrpc.CallFunc {
		return func(ctx context.Context, info *redisrpc.CallInfo, req any) (any, error) {
			if info.Meta["token"] != "s3cret" {
				return nil, redisrpc.NewError("unauthenticated", "no token")
			}
			return next(context.WithValue(ctx, userKey{}, "ann"), info, req)
		}
	}
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet),
		redisrpc.WithInterceptors(rec.interceptor("s1"), rec.interceptor("s2")), redisrpc.WithInterceptors(auth))
	seen := make(chan redisrpc.CallInfo, 1)
	redisrpc.Handle(mux, add1, func(ctx context.Context, x int) (int, error) {
		runs.Add(1)
		if ctx.Value(userKey{}) != "ann" {
			return 0, errors.New("the interceptor's context did not reach the handler")
		}
		seen <- *redisrpc.CallInfoFromContext(ctx)
		return x + 1, nil
	})
	serve(t, mux)
	token := func(next redisrpc.CallFunc) redisrpc.CallFunc {
		return func(ctx context.Context, info *redisrpc.CallInfo, req any) (any, error) {
			meta := map[string]string{"token": "s3cret"}
			for k, v := range info.Meta {
				meta[k] = v
			}
			info.Meta = meta
			return next(ctx, info, req)
		}
	}
	var clientInfo redisrpc.CallInfo
	keep := func(next redisrpc.CallFunc) redisrpc.CallFunc {
		return func(ctx context.Context, info *redisrpc.CallInfo, req any) (any, error) {
			clientInfo = *info
			return next(ctx, info, req)
		}
	}
	c := newClient(t, rc, q, redisrpc.WithInterceptors(rec.interceptor("c1"), rec.interceptor("c2"), token, keep))
	deadline := time.Now().Add(5 * time.Second)
	ctx, cancel := context.WithDeadline(redisrpc.WithOutgoingMeta(context.Background(), map[string]string{"k": "v"}), deadline)
	defer cancel()
	if got, err := redisrpc.Call(ctx, c, add1, 41); err != nil || got != 42 {
		t.Fatalf("add1(41): got %d, %v; want 42, nil", got, err)
	}
	want := []string{"c1> client add1(41)", "c2> client add1(41)", "s1> server add1(41)", "s2> server add1(41)",
		"s2< 42 <nil>", "s1< 42 <nil>", "c2< 42 <nil>", "c1< 42 <nil>"}
	if !slices.Equal(rec.notes, want) {
		t.Errorf("the order of interceptors:\n got %q\nwant %q", rec.notes, want)
	}
	info := <-seen
	if info.Side != redisrpc.SideServer || info.Queue != q || info.Function != "add1" || info.ID == "" || info.ID != clientInfo.ID ||
		info.Deadline.Sub(deadline).Abs() > time.Millisecond || time.Since(info.Sent) > 5*time.Second ||
		info.Meta["k"] != "v" || info.Meta["token"] != "s3cret" {
		t.Errorf("the handler's CallInfo: got %+v; want server side, queue %s, add1, the client's id %q, deadline %v, sent now, meta k and token",
			info, q, clientInfo.ID, deadline)
	}
	if clientInfo.Side != redisrpc.SideClient || clientInfo.Queue != q || clientInfo.Function != "add1" || !clientInfo.Deadline.Equal(deadline) {
		t.Errorf("the client's CallInfo: got %+v", clientInfo)
	}

	// Without the token the server's interceptor refuses the call: the
	// handler does not run.
	plain := newClient(t, rc, q)
	before := runs.Load()
	if _, err := redisrpc.Call(ctx, plain, add1, 1); redisrpc.CodeOf(err) != "unauthenticated" {
		t.Errorf("a call without the token: got %v, want code unauthenticated", err)
	}
	if runs.Load() != before {
		t.Error("the handler ran for a refused call")
	}

	// A client interceptor may change the request, or answer by itself.
	double := func(next redisrpc.CallFunc) redisrpc.CallFunc {
		return func(ctx context.Context, info *redisrpc.CallInfo, req any) (any, error) {
			return next(ctx, info, req.(int)*2)
		}
	}
	cached := func(redisrpc.CallFunc) redisrpc.CallFunc {
		return func(context.Context, *redisrpc.CallInfo, any) (any, error) { return 7, nil }
	}
	wrong := func(redisrpc.CallFunc) redisrpc.CallFunc {
		return func(context.Context, *redisrpc.CallInfo, any) (any, error) { return "seven", nil }
	}
	if got, err := redisrpc.Call(ctx, newClient(t, rc, q, redisrpc.WithInterceptors(token, double)), add1, 10); err != nil || got != 21 {
		t.Errorf("with a request doubled on the way: got %d, %v; want 21", got, err)
	}
	before = runs.Load()
	if got, err := redisrpc.Call(ctx, newClient(t, rc, q, redisrpc.WithInterceptors(cached)), add1, 10); err != nil || got != 7 || runs.Load() != before {
		t.Errorf("answered by an interceptor: got %d, %v and %d runs; want 7, nil and none", got, err, runs.Load()-before)
	}
	if _, err := redisrpc.Call(ctx, newClient(t, rc, q, redisrpc.WithInterceptors(wrong)), add1, 10); err == nil {
		t.Error("an interceptor returning a string for an int: got no error")
	}
}

// TestInterceptorsSeeFailures: server interceptors see calls of unknown
// functions and bad arguments, with the error their callers get.
func TestInterceptorsSeeFailures(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	var rec recorder
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithInterceptors(rec.interceptor("s")))
	redisrpc.Handle(mux, add1, func(_ context.Context, x int) (int, error) { return x + 1, nil })
	serve(t, mux)
	c := newClient(t, rc, q)
	ctx := timeout(t, 5*time.Second)
	redisrpc.Call(ctx, c, redisrpc.NewEndpoint[int, int]("nope"), 1)
	redisrpc.Call(ctx, c, redisrpc.NewEndpoint[string, int]("add1"), "x")
	want := []string{`s> server nope(<nil>)`, `s< <nil> not_found: no function "nope"`,
		`s> server add1(<nil>)`, `s< <nil> invalid_argument: add1: json: cannot unmarshal string into Go value of type int`}
	if !slices.Equal(rec.notes, want) {
		t.Errorf("what the server's interceptor saw:\n got %q\nwant %q", rec.notes, want)
	}
}

// TestMetaForwarding: a handler's calls carry the metadata its caller sent
// only from a Client made WithMetaForwarding, under its own outgoing
// metadata.
func TestMetaForwarding(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	front, back := newQueue(t), newQueue(t)+":back"
	echoMeta := redisrpc.NewEndpoint[string, string]("meta")
	backMux := redisrpc.NewMux(rc, back, redisrpc.WithLogger(quiet))
	redisrpc.Handle(backMux, echoMeta, func(ctx context.Context, key string) (string, error) {
		return redisrpc.IncomingMeta(ctx)[key], nil
	})
	serve(t, backMux)
	plain, forwarding := newClient(t, rc, back), newClient(t, rc, back, redisrpc.WithMetaForwarding())
	frontMux := redisrpc.NewMux(rc, front, redisrpc.WithLogger(quiet))
	redisrpc.Handle(frontMux, echoMeta, func(ctx context.Context, how string) (string, error) {
		switch how {
		case "plain":
			return redisrpc.Call(ctx, plain, echoMeta, "user")
		case "forwarding":
			return redisrpc.Call(ctx, forwarding, echoMeta, "user")
		case "traceparent", "tracestate":
			return redisrpc.Call(ctx, forwarding, echoMeta, how)
		}
		ctx = redisrpc.WithOutgoingMeta(ctx, map[string]string{"user": "bob"})
		return redisrpc.Call(ctx, forwarding, echoMeta, "user")
	})
	serve(t, frontMux)
	c := newClient(t, rc, front)
	ctx := redisrpc.WithOutgoingMeta(timeout(t, 5*time.Second), map[string]string{"user": "ann",
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "k=v"})
	// The trace context is the tracer's to set for each hop, not forwarded.
	for how, want := range map[string]string{"plain": "", "forwarding": "ann", "overridden": "bob", "traceparent": "", "tracestate": ""} {
		if got, err := redisrpc.Call(ctx, c, echoMeta, how); err != nil || got != want {
			t.Errorf("%s: the back end saw user %q, %v; want %q", how, got, err, want)
		}
	}
}

// TestNewIncomingContext: a handler called directly, as a unit test does,
// reads the call information and metadata it was given.
func TestNewIncomingContext(t *testing.T) {
	handler := func(ctx context.Context, _ int) (string, error) {
		info := redisrpc.CallInfoFromContext(ctx)
		return fmt.Sprintf("%s %s %s", info.Side, info.Function, redisrpc.IncomingMeta(ctx)["user"]), nil
	}
	ctx := redisrpc.NewIncomingContext(context.Background(), redisrpc.CallInfo{Function: "f", Meta: map[string]string{"user": "ann"}})
	if got, _ := handler(ctx, 1); got != "server f ann" {
		t.Errorf("got %q, want %q", got, "server f ann")
	}
	if redisrpc.CallInfoFromContext(context.Background()) != nil || redisrpc.IncomingMeta(context.Background()) != nil {
		t.Error("a plain context has call information")
	}
}

// TestOptionTargets: an option meant for a Mux is not a ClientOption, and
// the reverse, so that giving it to the wrong one does not compile; shared
// options are both.
func TestOptionTargets(t *testing.T) {
	clientOpt := reflect.TypeFor[redisrpc.ClientOption]()
	muxOpt := reflect.TypeFor[redisrpc.MuxOption]()
	for _, tt := range []struct {
		name        string
		opt         any
		client, mux bool
	}{
		{"WithLogger", redisrpc.WithLogger(quiet), true, true},
		{"WithShards", redisrpc.WithShards(2), true, true},
		{"WithMaxMessageSize", redisrpc.WithMaxMessageSize(1), true, true},
		{"WithInterceptors", redisrpc.WithInterceptors(), true, true},
		{"WithConcurrency", redisrpc.WithConcurrency(1), false, true},
		{"WithResponseTTL", redisrpc.WithResponseTTL(time.Second), false, true},
		{"WithAtLeastOnce", redisrpc.WithAtLeastOnce(), false, true},
		{"WithHeartbeat", redisrpc.WithHeartbeat(time.Second), false, true},
		{"WithRedactedErrors", redisrpc.WithRedactedErrors(), false, true},
		{"WithClassicServer", redisrpc.WithClassicServer(), true, false},
		{"WithMetaForwarding", redisrpc.WithMetaForwarding(), true, false},
		{"WithCallTimeout", redisrpc.WithCallTimeout(time.Second), true, false},
		{"WithFailFast", redisrpc.WithFailFast(), true, false},
		{"WithMaxInFlight", redisrpc.WithMaxInFlight(1), true, false},
		{"WithMaxDeliveries", redisrpc.WithMaxDeliveries(1), false, true},
	} {
		typ := reflect.TypeOf(tt.opt)
		if got := typ.Implements(clientOpt); got != tt.client {
			t.Errorf("%s is a ClientOption: got %v, want %v", tt.name, got, tt.client)
		}
		if got := typ.Implements(muxOpt); got != tt.mux {
			t.Errorf("%s is a MuxOption: got %v, want %v", tt.name, got, tt.mux)
		}
	}
}

// TestCallTimeout: a call whose context has no deadline gets the Client's,
// which travels with its request.
func TestCallTimeout(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	c := newClient(t, rc, q, redisrpc.WithCallTimeout(200*time.Millisecond))
	start := time.Now()
	_, err := redisrpc.Call(context.Background(), c, add1, 1)
	if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > 2*time.Second {
		t.Errorf("a call with no deadline: got %v after %v; want context.DeadlineExceeded after about 200ms", err, took)
	}
	body, err := rc.Do(context.Background(), rc.B().Lpop().Key(q).Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	var req struct{ Deadline, Sent int64 }
	if err := json.Unmarshal([]byte(body), &req); err != nil || req.Deadline-req.Sent < 150 || req.Deadline-req.Sent > 250 {
		t.Errorf("the request %s: want a deadline 200ms after it was sent", body)
	}
}

// TestClientMessageLimit: a Client refuses to send a request over its
// WithMaxMessageSize, and fails a call whose response is over it.
func TestClientMessageLimit(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	echo := redisrpc.NewEndpoint[string, string]("echo")
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	redisrpc.Handle(mux, echo, func(_ context.Context, s string) (string, error) { return strings.Repeat(s, 3), nil })
	serve(t, mux)
	c := newClient(t, rc, q, redisrpc.WithMaxMessageSize(1000))
	ctx := timeout(t, 5*time.Second)
	unserved := q + ":unserved"
	for _, c := range []*redisrpc.Client{c, newClient(t, rc, unserved, redisrpc.WithMaxMessageSize(1000))} {
		if _, err := redisrpc.Call(ctx, c, echo, strings.Repeat("x", 1000)); !errors.Is(err, redisrpc.ErrTooLarge) {
			t.Errorf("a request over the limit: got %v, want ErrTooLarge", err)
		}
	}
	if n, _ := rc.Do(ctx, rc.B().Llen().Key(unserved).Build()).AsInt64(); n != 0 {
		t.Errorf("the request over the limit was sent: %d in the queue", n)
	}
	if _, err := redisrpc.Call(ctx, c, echo, strings.Repeat("x", 400)); !errors.Is(err, redisrpc.ErrTooLarge) {
		t.Errorf("a response over the limit: got %v, want ErrTooLarge", err)
	}
	if got, err := redisrpc.Call(ctx, c, echo, "ab"); err != nil || got != "ababab" {
		t.Errorf("small messages: got %q, %v; want ababab", got, err)
	}
}

// TestErrorText: errors name the function once and the package once.
func TestErrorText(t *testing.T) {
	rc := redisrpctest.Redis(t)
	c := redisrpc.NewClient(rc, newQueue(t))
	c.Close()
	_, err := redisrpc.Call(context.Background(), c, redisrpc.NewEndpoint[int, int]("block"), 1)
	if want := "redisrpc: block: client closed"; err == nil || err.Error() != want || !errors.Is(err, redisrpc.ErrClientClosed) {
		t.Errorf("a call on a closed client: got %v, want %q matching ErrClientClosed", err, want)
	}
	// Requests that cannot be encoded fail before anything is sent.
	for _, tc := range []struct {
		call func() error
		want string
	}{
		{func() error {
			_, err := redisrpc.Call(context.Background(), c, redisrpc.NewEndpoint[chan int, int]("bad"), make(chan int))
			return err
		}, "redisrpc: bad: encoding the request: json: unsupported type: chan int"},
		{func() error {
			_, err := redisrpc.Call(context.Background(), c, redisrpc.NewEndpoint[int, int]("named", redisrpc.WithNamedArgs()), 1)
			return err
		}, "redisrpc: named: WithNamedArgs needs a request that encodes as a JSON object, got 1"},
		{func() error {
			_, err := redisrpc.Call(context.Background(), c, redisrpc.Endpoint[int, int]{}, 1)
			return err
		}, "redisrpc: call of a zero Endpoint; make endpoints with NewEndpoint"},
	} {
		if err := tc.call(); err == nil || err.Error() != tc.want {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}

// TestStats: a Mux counts calls and failures by function, pops and the
// requests they bring, and handlers running now.
func TestStats(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	release, started := make(chan struct{}), make(chan struct{})
	redisrpc.Handle(mux, add1, func(_ context.Context, x int) (int, error) {
		switch x {
		case -1:
			return 0, redisrpc.NewError(redisrpc.CodeInvalidArgument, "negative")
		case -2:
			close(started)
			<-release
		}
		time.Sleep(time.Millisecond)
		return x + 1, nil
	})
	serve(t, mux)
	c := newClient(t, rc, q)
	ctx := timeout(t, 10*time.Second)
	for i := range 10 {
		redisrpc.Call(ctx, c, add1, i)
	}
	redisrpc.Call(ctx, c, add1, -1)
	redisrpc.Call(ctx, c, redisrpc.NewEndpoint[int, int]("nope"), 1)
	held := make(chan error, 1)
	go func() { _, err := redisrpc.Call(ctx, c, add1, -2); held <- err }()
	<-started
	// The other requests leave the count just after their answers.
	st := mux.Stats()
	for deadline := time.Now().Add(time.Second); st.InFlight != 1 && time.Now().Before(deadline); st = mux.Stats() {
		time.Sleep(time.Millisecond)
	}
	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	f := st.Functions["add1"]
	if f.Calls != 11 || f.Errors[redisrpc.CodeInvalidArgument] != 1 || len(f.Errors) != 1 || f.P50 < time.Millisecond || f.P99 < f.P50 {
		t.Errorf("add1: got %+v; want 11 calls, 1 invalid_argument, a median of 1ms or more", f)
	}
	if u := st.Functions[""]; u.Calls != 1 || u.Errors[redisrpc.CodeNotFound] != 1 {
		t.Errorf("unknown functions: got %+v; want 1 call, 1 not_found", u)
	}
	if st.InFlight != 1 {
		t.Errorf("in flight: got %d, want 1", st.InFlight)
	}
	if st.Taken != 13 || st.Pops == 0 || st.Pops > st.Taken {
		t.Errorf("pops: got %d bringing %d requests; want 1 to 13 bringing 13", st.Pops, st.Taken)
	}
}

// TestLogCalls: the logging interceptor writes one record per call on each
// side, with the request id, and the code of failures.
func TestLogCalls(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	var buf strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, nil))
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithInterceptors(redisrpc.LogCalls(log)))
	redisrpc.Handle(mux, add1, func(_ context.Context, x int) (int, error) {
		if x < 0 {
			return 0, redisrpc.NewError(redisrpc.CodeInvalidArgument, "negative")
		}
		return x + 1, nil
	})
	serve(t, mux)
	c := newClient(t, rc, q, redisrpc.WithInterceptors(redisrpc.LogCalls(log)))
	ctx := timeout(t, 5*time.Second)
	redisrpc.Call(ctx, c, add1, 1)
	redisrpc.Call(ctx, c, add1, -1)
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	for _, want := range []string{
		`level=INFO msg="redisrpc: call" side=server queue=` + q + ` function=add1 id=1 took=`,
		`level=INFO msg="redisrpc: call" side=client queue=` + q + ` function=add1 id=1 took=`,
		`level=WARN msg="redisrpc: call failed" side=server queue=` + q + ` function=add1 id=2 took=`,
		`code=invalid_argument err="invalid_argument: negative"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %q:\n%s", want, out)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// ExampleWithInterceptors refuses calls that carry no token, on the server,
// and adds the token on the client.
func ExampleWithInterceptors() {
	auth := func(next redisrpc.CallFunc) redisrpc.CallFunc {
		return func(ctx context.Context, info *redisrpc.CallInfo, req any) (any, error) {
			if info.Meta["token"] != "s3cret" {
				return nil, redisrpc.NewError("unauthenticated", "no valid token")
			}
			return next(ctx, info, req)
		}
	}
	mux := redisrpc.NewMux(rc, "example:auth", redisrpc.WithInterceptors(auth))
	hello := redisrpc.NewEndpoint[string, string]("hello")
	redisrpc.Handle(mux, hello, func(_ context.Context, name string) (string, error) { return "hello " + name, nil })
	go mux.Serve(context.Background())
	defer mux.Shutdown(context.Background())

	token := func(next redisrpc.CallFunc) redisrpc.CallFunc {
		return func(ctx context.Context, info *redisrpc.CallInfo, req any) (any, error) {
			info.Meta = map[string]string{"token": "s3cret"} // a new map: never modify the one found
			return next(ctx, info, req)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, c := range []*redisrpc.Client{
		redisrpc.NewClient(rc, "example:auth"),
		redisrpc.NewClient(rc, "example:auth", redisrpc.WithInterceptors(token)),
	} {
		got, err := redisrpc.Call(ctx, c, hello, "ann")
		fmt.Printf("%q %v\n", got, err)
		c.Close()
	}
	// Output:
	// "" redisrpc: hello: unauthenticated: no valid token
	// "hello ann" <nil>
}

// ExampleErrorDetails reads the structured details of a failure.
func ExampleErrorDetails() {
	type Shortage struct {
		Item string `json:"item"`
		Left int    `json:"left"`
	}
	mux := redisrpc.NewMux(rc, "example:details")
	order := redisrpc.NewEndpoint[int, string]("order")
	redisrpc.Handle(mux, order, func(_ context.Context, n int) (string, error) {
		return "", redisrpc.NewError("out_of_stock", "not enough apples").WithDetails(Shortage{"apple", 2})
	})
	go mux.Serve(context.Background())
	defer mux.Shutdown(context.Background())
	c := redisrpc.NewClient(rc, "example:details")
	defer c.Close()

	_, err := redisrpc.Call(context.Background(), c, order, 5)
	if s, ok := redisrpc.ErrorDetails[Shortage](err); ok && redisrpc.CodeOf(err) == "out_of_stock" {
		fmt.Printf("only %d %s left\n", s.Left, s.Item)
	}
	// Output: only 2 apple left
}

// countingCodec is encoding/json, counted, or with its output replaced.
type countingCodec struct {
	marshals, unmarshals atomic.Int64
	output               []byte // Marshal's output where set
	unmarshalErr         error  // Unmarshal's error where set
}

func (c *countingCodec) Marshal(v any) ([]byte, error) {
	c.marshals.Add(1)
	if c.output != nil {
		return c.output, nil
	}
	return json.Marshal(v)
}

func (c *countingCodec) Unmarshal(data []byte, v any) error {
	c.unmarshals.Add(1)
	if c.unmarshalErr != nil {
		return c.unmarshalErr
	}
	return json.Unmarshal(data, v)
}

// TestCodec: WithCodec encodes and decodes requests and results on both
// sides; a codec's output that is not JSON is refused before it is sent, and
// a codec's errors reach the caller with the code they deserve.
func TestCodec(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	ctx := timeout(t, 10*time.Second)
	move := redisrpc.NewEndpoint[point, point]("move")
	handler := func(_ context.Context, p point) (point, error) { return point{p.X + 1, p.Y + 1}, nil }
	serverCodec, clientCodec := &countingCodec{}, &countingCodec{}
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithCodec(serverCodec))
	redisrpc.Handle(mux, move, handler)
	serve(t, mux)
	c := newClient(t, rc, q, redisrpc.WithCodec(clientCodec))
	if got, err := redisrpc.Call(ctx, c, move, point{1, 2}); err != nil || got != (point{2, 3}) {
		t.Fatalf("a call: got %v, %v; want {2 3}", got, err)
	}
	for _, side := range []struct {
		name  string
		codec *countingCodec
	}{{"client", clientCodec}, {"server", serverCodec}} {
		if m, u := side.codec.marshals.Load(), side.codec.unmarshals.Load(); m != 1 || u != 1 {
			t.Errorf("the %s's codec: got %d marshals and %d unmarshals, want 1 and 1", side.name, m, u)
		}
	}

	unserved := q + ":unserved"
	bad := newClient(t, rc, unserved, redisrpc.WithCodec(&countingCodec{output: []byte(`{"x":`)}))
	if _, err := redisrpc.Call(ctx, bad, move, point{}); err == nil || !strings.Contains(err.Error(), "no valid JSON") {
		t.Errorf("a client codec's broken JSON: got %v, want an error saying it is no valid JSON", err)
	}
	if n, _ := rc.Do(ctx, rc.B().Llen().Key(unserved).Build()).AsInt64(); n != 0 {
		t.Errorf("the broken request was sent: %d in the queue", n)
	}

	for _, tc := range []struct {
		name  string
		codec *countingCodec
		want  redisrpc.Code
	}{
		{"broken JSON", &countingCodec{output: []byte(`[1 2]`)}, redisrpc.CodeInternal},
		{"an error decoding", &countingCodec{unmarshalErr: errors.New("no thanks")}, redisrpc.CodeInvalidArgument},
	} {
		q := newQueue(t)
		mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithCodec(tc.codec))
		redisrpc.Handle(mux, move, handler)
		serve(t, mux)
		if _, err := redisrpc.Call(ctx, newClient(t, rc, q), move, point{}); redisrpc.CodeOf(err) != tc.want {
			t.Errorf("a server codec's %s: got %v, want code %s", tc.name, err, tc.want)
		}
	}
}

// strictJSON is encoding/json, except that a request with a member its type
// lacks is refused rather than read in part.
type strictJSON struct{}

func (strictJSON) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

func (strictJSON) Unmarshal(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

func ExampleWithCodec() {
	type Rename struct{ From, To string }
	type RenameForce struct { // what a newer client sends
		From, To string
		Force    bool
	}
	rename := redisrpc.NewEndpoint[Rename, string]("rename")
	mux := redisrpc.NewMux(rc, "example:files", redisrpc.WithCodec(strictJSON{}))
	redisrpc.Handle(mux, rename, func(_ context.Context, r Rename) (string, error) {
		return r.From + " -> " + r.To, nil
	})
	go mux.Serve(context.Background())
	defer mux.Shutdown(context.Background())

	c := redisrpc.NewClient(rc, "example:files")
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fmt.Println(redisrpc.Call(ctx, c, rename, Rename{"a.txt", "b.txt"}))
	_, err := redisrpc.Call(ctx, c, redisrpc.NewEndpoint[RenameForce, string]("rename"), RenameForce{"a.txt", "b.txt", true})
	fmt.Println(err)
	// Output:
	// a.txt -> b.txt <nil>
	// redisrpc: rename: invalid_argument: rename: json: unknown field "Force"
}

// TestShardedClientBeforeServers: a client WithShards whose calls come
// before any server is live sends them to the queue itself, which every
// server serves, not to shards an unsharded server never reads.
func TestShardedClientBeforeServers(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	echo := redisrpc.NewEndpoint[int, int]("echo")
	c := newClient(t, rc, q, redisrpc.WithShards(3))
	ctx := timeout(t, 4*time.Second)
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			if got, err := redisrpc.Call(ctx, c, echo, i); err != nil || got != i {
				t.Errorf("call %d: got %d, %v; want %d", i, got, err, i)
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	redisrpc.Handle(mux, echo, func(_ context.Context, x int) (int, error) { return x, nil })
	serve(t, mux)
	wg.Wait()
}

// TestCallAllShortDeadline: a CallAll with a short deadline does not expire
// the requests that longer ones left in a server's inbox.
func TestCallAllShortDeadline(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithConcurrency(1))
	nap := redisrpc.NewEndpoint[int, int]("nap")
	redisrpc.Handle(mux, nap, func(_ context.Context, ms int) (int, error) {
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return ms, nil
	})
	serve(t, mux)
	c := newClient(t, rc, q)
	busy := make(chan error, 2)
	for range 2 { // one runs, one waits for the slot: the inbox keeps A's request
		go func() { _, err := redisrpc.Call(timeout(t, 5*time.Second), c, nap, 400); busy <- err }()
	}
	time.Sleep(200 * time.Millisecond)
	long := make(chan []redisrpc.Result[int], 1)
	go func() {
		res, _ := redisrpc.CallAll(timeout(t, 5*time.Second), c, nap, 1)
		long <- res
	}()
	time.Sleep(100 * time.Millisecond)
	redisrpc.CallAll(timeout(t, 100*time.Millisecond), c, nap, 2)
	start := time.Now()
	if res := <-long; len(res) != 1 || res[0].Err != nil || res[0].Value != 1 {
		t.Errorf("CallAll with 5 s beside one with 100 ms: got %+v after %v, want one answer of 1", res, time.Since(start).Round(time.Millisecond))
	}
	for range 2 {
		if err := <-busy; err != nil {
			t.Errorf("a call that kept the server busy: %v", err)
		}
	}
}

// TestCallAllMessageLimit: CallAll refuses a request over the servers'
// message limit, as Call does.
func TestCallAllMessageLimit(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithMaxMessageSize(200))
	echo := redisrpc.NewEndpoint[string, string]("echo")
	redisrpc.Handle(mux, echo, func(_ context.Context, s string) (string, error) { return s, nil })
	serve(t, mux)
	c := newClient(t, rc, q)
	big := strings.Repeat("x", 1000)
	if _, err := redisrpc.Call(timeout(t, 3*time.Second), c, echo, big); !errors.Is(err, redisrpc.ErrTooLarge) {
		t.Errorf("Call: got %v, want ErrTooLarge", err)
	}
	res, err := redisrpc.CallAll(timeout(t, 3*time.Second), c, echo, big)
	if err != nil || len(res) != 1 || !errors.Is(res[0].Err, redisrpc.ErrTooLarge) {
		t.Errorf("CallAll: got %+v, %v; want one result with ErrTooLarge", res, err)
	}
}

// TestClassicClientLifecycle: a client WithClassicServer sends nothing after
// Close, ends its calls in flight at Close and at cancel, not at their
// deadlines, and makes CallAll calls.
func TestClassicClientLifecycle(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	echo := redisrpc.NewEndpoint[int, int]("echo")
	within := func(d time.Duration, f func() error) (time.Duration, error) {
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- f() }()
		select {
		case err := <-done:
			return time.Since(start), err
		case <-time.After(d):
			return time.Since(start), <-done
		}
	}

	q := newQueue(t) // no server: calls wait
	closed := newClient(t, rc, q, redisrpc.WithClassicServer())
	closed.Close()
	if _, err := redisrpc.Call(timeout(t, time.Second), closed, echo, 1); !errors.Is(err, redisrpc.ErrClientClosed) {
		t.Errorf("a call after Close: got %v, want ErrClientClosed", err)
	}
	if n, err := rc.Do(context.Background(), rc.B().Llen().Key(q).Build()).AsInt64(); err != nil || n != 0 {
		t.Errorf("requests sent after Close: got %d, %v; want 0", n, err)
	}

	c := newClient(t, rc, q, redisrpc.WithClassicServer())
	go func() { time.Sleep(200 * time.Millisecond); c.Close() }()
	took, err := within(3*time.Second, func() error { _, err := redisrpc.Call(timeout(t, 5*time.Second), c, echo, 2); return err })
	if !errors.Is(err, redisrpc.ErrClientClosed) || took > time.Second {
		t.Errorf("a call in flight at Close: got %v after %v, want ErrClientClosed at once", err, took.Round(time.Millisecond))
	}

	c = newClient(t, rc, q, redisrpc.WithClassicServer())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	go func() { time.Sleep(200 * time.Millisecond); cancel() }()
	took, err = within(3*time.Second, func() error { _, err := redisrpc.Call(ctx, c, echo, 3); return err })
	if !errors.Is(err, context.Canceled) || took > time.Second {
		t.Errorf("a call cancelled: got %v after %v, want context.Canceled at once", err, took.Round(time.Millisecond))
	}

	served := newQueue(t)
	mux := redisrpc.NewMux(rc, served, redisrpc.WithLogger(quiet))
	redisrpc.Handle(mux, echo, func(_ context.Context, x int) (int, error) { return x, nil })
	serve(t, mux)
	c = newClient(t, rc, served, redisrpc.WithClassicServer())
	res, err := redisrpc.CallAll(timeout(t, 3*time.Second), c, echo, 4)
	if err != nil || len(res) != 1 || res[0].Err != nil || res[0].Value != 4 {
		t.Errorf("CallAll with a classic client: got %+v, %v; want one answer of 4", res, err)
	}
}

// TestBracedQueueOfItsOwn: queue X and queue {X} are two services: a server
// of {X} is no server of X.
func TestBracedQueueOfItsOwn(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	echo := redisrpc.NewEndpoint[int, int]("echo")
	mux := redisrpc.NewMux(rc, "{"+q+"}", redisrpc.WithLogger(quiet))
	redisrpc.Handle(mux, echo, func(_ context.Context, x int) (int, error) { return x, nil })
	serve(t, mux)
	c := newClient(t, rc, q, redisrpc.WithFailFast())
	if _, err := redisrpc.Call(timeout(t, 3*time.Second), c, echo, 1); redisrpc.CodeOf(err) != redisrpc.CodeUnavailable {
		t.Errorf("a fail-fast call to %s with only {%s} served: got %v, want CodeUnavailable", q, q, err)
	}
	if res, err := redisrpc.CallAll(timeout(t, 3*time.Second), c, echo, 1); err != nil || len(res) != 0 {
		t.Errorf("CallAll(%s) with only {%s} served: got %+v, %v; want no results", q, q, res, err)
	}
	braced := newClient(t, rc, "{"+q+"}", redisrpc.WithFailFast())
	if got, err := redisrpc.Call(timeout(t, 3*time.Second), braced, echo, 2); err != nil || got != 2 {
		t.Errorf("a call to {%s}: got %d, %v; want 2", q, got, err)
	}
}

// serveNoWait serves mux in the background, without waiting for Ready, and
// shuts it down when the test ends.
func serveNoWait(t *testing.T, mux *redisrpc.Mux) {
	t.Helper()
	served := make(chan error, 1)
	go func() { served <- mux.Serve(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		mux.Shutdown(ctx)
		<-served
	})
}

// TestReadyWithOneShardBroken: a server whose lease on one shard cannot be
// renewed is registered all the same (its lease on the queue itself held
// and its entry published, what WithFailFast clients and tools read): Ready
// closes, as a readiness probe needs.
func TestReadyWithOneShardBroken(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	// Every renewal of the lease on shard 1 fails; the keys of the Redis that
	// other tests share stay sound.
	broken := &failingLease{Client: rc, leases: keys.Leases(keys.Shards(q, 3)[1])}
	mux := redisrpc.NewMux(broken, q, redisrpc.WithLogger(quiet), redisrpc.WithShards(3), redisrpc.WithHeartbeat(300*time.Millisecond))
	echo := redisrpc.NewEndpoint[int, int]("echo")
	redisrpc.Handle(mux, echo, func(_ context.Context, x int) (int, error) { return x, nil })
	serveNoWait(t, mux)

	// The server is registered and serves: a fail-fast client sees it.
	c := newClient(t, rc, q, redisrpc.WithFailFast())
	deadline := time.Now().Add(3 * time.Second)
	for {
		got, err := redisrpc.Call(timeout(t, 2*time.Second), c, echo, 7)
		if err == nil && got == 7 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a fail-fast call: got %d, %v; want 7 (the test expects the server registered)", got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-mux.Ready():
	case <-time.After(2 * time.Second):
		t.Errorf("Ready: still open 2 s after the server was registered and answered a fail-fast call; want closed once registered")
	}
}

// failingLease fails the scripts that name the lease set leases.
type failingLease struct {
	rueidis.Client
	leases string
}

func (f *failingLease) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	if args := cmd.Commands(); len(args) > 0 && strings.HasPrefix(args[0], "EVAL") && slices.Contains(args, f.leases) {
		return rueidis.NewErrorResult(errors.New("a lease that cannot be renewed"))
	}
	return f.Client.Do(ctx, cmd)
}

// TestCutOffDeadlineErrorIsNotTheCallers: a handler that a stop cut off and
// that returns an *Error with CodeDeadlineExceeded, its caller's deadline
// seconds away, answers unavailable: the caller's errors.Is(err,
// context.DeadlineExceeded) holds only for its own deadline.
func TestCutOffDeadlineErrorIsNotTheCallers(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	wait := redisrpc.NewEndpoint[int, int]("wait")
	running := make(chan struct{}, 1)
	redisrpc.Handle(mux, wait, func(ctx context.Context, _ int) (int, error) {
		running <- struct{}{}
		<-ctx.Done()
		// A downstream call's verdict, as a handler passes it on.
		return 0, redisrpc.NewError(redisrpc.CodeDeadlineExceeded, "inventory: context deadline exceeded")
	})
	served := make(chan error, 1)
	go func() { served <- mux.Serve(context.Background()) }()
	defer func() { mux.Shutdown(context.Background()); <-served }()
	c := newClient(t, rc, q)
	ctx := timeout(t, 10*time.Second)
	errc := make(chan error, 1)
	go func() { _, err := redisrpc.Call(ctx, c, wait, 1); errc <- err }()
	select {
	case <-running:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not start")
	}
	sctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	mux.Shutdown(sctx) // cuts the handler off at 100 ms
	var err error
	select {
	case err = <-errc:
	case <-time.After(5 * time.Second):
		t.Fatal("the call did not return within 5 s of the stop")
	}
	if ctx.Err() != nil {
		t.Fatalf("the caller's context ended (%v): the test needs it alive", ctx.Err())
	}
	if errors.Is(err, context.DeadlineExceeded) || redisrpc.CodeOf(err) == redisrpc.CodeDeadlineExceeded {
		t.Errorf("a cut-off handler's deadline error, the caller's deadline ~10 s away: got %v (code %q, matches context.DeadlineExceeded: %v); want CodeUnavailable, not matching context.DeadlineExceeded",
			err, redisrpc.CodeOf(err), errors.Is(err, context.DeadlineExceeded))
	}
}

// proxy forwards TCP connections to target until closed; after close, new
// connections are refused and old ones are cut.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func redisAddr(t *testing.T, rc rueidis.Client) string {
	for addr := range rc.Nodes() {
		return addr
	}
	t.Fatal("no node address")
	return ""
}

// TestRedactedDownstreamTransportFailure: with WithRedactedErrors, a handler
// that returns its own downstream call's Redis failure (an *Error made by a
// Client, with CodeUnavailable) does not send its caller that failure's
// text, which names addresses of the server's side.
func TestRedactedDownstreamTransportFailure(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	p := newProxy(t, redisAddr(t, rc))
	down, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{p.ln.Addr().String()}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Skipf("a client through a proxy: %v", err)
	}
	defer down.Close()
	q := newQueue(t)
	inventory := newClient(t, down, q+".inventory")
	p.close() // the downstream Redis is gone
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithRedactedErrors())
	place := redisrpc.NewEndpoint[int, int]("place")
	reserve := redisrpc.NewEndpoint[int, int]("reserve")
	var handlerErr atomic.Value
	redisrpc.Handle(mux, place, func(ctx context.Context, x int) (int, error) {
		n, err := redisrpc.Call(ctx, inventory, reserve, x)
		if err != nil {
			handlerErr.Store(err.Error())
		}
		return n, err
	})
	serve(t, mux)
	c := newClient(t, rc, q)
	_, err = redisrpc.Call(timeout(t, 5*time.Second), c, place, 1)
	herr, _ := handlerErr.Load().(string)
	if herr == "" {
		t.Fatalf("the handler's downstream call did not fail (caller got %v)", err)
	}
	var rerr *redisrpc.Error
	if !errors.As(err, &rerr) {
		t.Fatalf("got %v, want an *Error", err)
	}
	if strings.Contains(rerr.Message, "sending the request") || strings.Contains(rerr.Message, p.ln.Addr().String()) {
		t.Errorf("WithRedactedErrors, the handler returned its downstream failure %q: the caller got %q (code %q); want the handler's text kept on the server (internal \"internal error\")",
			herr, rerr.Message, rerr.Code)
	}
}

// gatedRedis passes every command on to Redis, but holds the first command
// that writes to a server's inbox until release is closed.
type gatedRedis struct {
	rueidis.Client
	once    sync.Once
	hit     chan struct{}
	release chan struct{}
}

func (g *gatedRedis) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	for _, arg := range cmd.Commands() {
		if strings.Contains(arg, ":inbox:") {
			first := false
			g.once.Do(func() { first = true })
			if first {
				close(g.hit)
				select { // a slow push, which its context ends, as rueidis' does
				case <-g.release:
				case <-ctx.Done():
					return rueidis.NewErrorResult(ctx.Err())
				}
			}
			break
		}
	}
	return g.Client.Do(ctx, cmd)
}

// TestCallAllSendsAfterClose: a CallAll whose push to a server's inbox is
// under way when Close is called (held here by a wrapper of the rueidis
// client) is ended by Close, which waits for it: nothing reaches Redis from
// the client after Close returns, and the server runs nothing.
func TestCallAllSendsAfterClose(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	flush := redisrpc.NewEndpoint[int, int]("flush")
	var ran atomic.Int64
	redisrpc.Handle(mux, flush, func(_ context.Context, x int) (int, error) { ran.Add(1); return x, nil })
	serve(t, mux)
	g := &gatedRedis{Client: rc, hit: make(chan struct{}), release: make(chan struct{})}
	c := redisrpc.NewClient(g, q, redisrpc.WithLogger(quiet))
	type out struct {
		res []redisrpc.Result[int]
		err error
	}
	done := make(chan out, 1)
	go func() {
		res, err := redisrpc.CallAll(timeout(t, 5*time.Second), c, flush, 1)
		done <- out{res, err}
	}()
	select {
	case <-g.hit:
	case <-time.After(5 * time.Second):
		close(g.release)
		t.Fatal("CallAll did not push to an inbox")
	}
	c.Close() // returns: nothing may reach Redis from c after this
	close(g.release)
	o := <-done
	time.Sleep(500 * time.Millisecond) // the server answers in milliseconds
	if n := ran.Load(); n != 0 {
		t.Errorf("after Close returned, CallAll's request reached the server and ran %d time(s) (CallAll gave %+v, %v); want nothing sent after Close", n, o.res, o.err)
	}
}

// TestClassicCallAllMessageLimit: a classic client's CallAll refuses, with
// ErrTooLarge, requests over the message limit its servers registered.
func TestClassicCallAllMessageLimit(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithMaxMessageSize(200))
	echo := redisrpc.NewEndpoint[string, string]("echo")
	redisrpc.Handle(mux, echo, func(_ context.Context, s string) (string, error) { return s, nil })
	serve(t, mux)
	c := newClient(t, rc, q, redisrpc.WithClassicServer())
	big := strings.Repeat("x", 1000)
	res, err := redisrpc.CallAll(timeout(t, 3*time.Second), c, echo, big)
	if err != nil || len(res) != 1 || !errors.Is(res[0].Err, redisrpc.ErrTooLarge) {
		var got error
		if len(res) == 1 {
			got = res[0].Err
		}
		t.Errorf("CallAll of a classic client, a request over the server's 200-byte limit: got %d results, first error %v, %v; want one result with ErrTooLarge", len(res), got, err)
	}
}

// failFirstRegistryRead passes every command on to Redis but fails the
// first read of a lease set (the registry's live servers), as a transient
// Redis error would.
type failFirstRegistryRead struct {
	rueidis.Client
	failed atomic.Bool
}

func (f *failFirstRegistryRead) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	args := cmd.Commands()
	if len(args) > 0 && strings.HasPrefix(args[0], "EVAL") {
		for _, a := range args {
			if strings.HasSuffix(a, ":leases") && f.failed.CompareAndSwap(false, true) {
				return rueidis.NewErrorResult(errors.New("a transient failure of the registry read"))
			}
		}
	}
	return f.Client.Do(ctx, cmd)
}

// TestShardedClientAfterFailedRegistryRead: a WithShards client whose first
// registry read fails knows no server, and sends its calls to the queue
// itself, which an unsharded server, live all along, serves.
func TestShardedClientAfterFailedRegistryRead(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	echo := redisrpc.NewEndpoint[int, int]("echo")
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	redisrpc.Handle(mux, echo, func(_ context.Context, x int) (int, error) { return x, nil })
	serve(t, mux) // registered before the client's first call
	c := newClient(t, &failFirstRegistryRead{Client: rc}, q, redisrpc.WithShards(3))
	lost := 0
	for i := range 3 { // within the client's first 2 s, before its next registry read
		if got, err := redisrpc.Call(timeout(t, 500*time.Millisecond), c, echo, i); err != nil || got != i {
			lost++
			t.Logf("call %d: got %d, %v", i, got, err)
		}
	}
	if lost > 0 {
		t.Errorf("a WithShards(3) client whose first registry read failed, one unsharded server live: %d of 3 calls failed; want all sent to the queue itself and answered", lost)
	}
}

// TestBusyServerHoldsCallsFromIdleOne: two servers of a queue,
// WithConcurrency(1): while one runs a long handler, a call goes to the idle
// one. A busy server keeps no second pop waiting in Redis on a list that has
// one, which would take the call and hold it in memory for the long handler.
func TestBusyServerHoldsCallsFromIdleOne(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	nap := redisrpc.NewEndpoint[int, int]("nap")
	for range 2 {
		m := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithConcurrency(1))
		redisrpc.Handle(m, nap, func(_ context.Context, ms int) (int, error) {
			time.Sleep(time.Duration(ms) * time.Millisecond)
			return ms, nil
		})
		serve(t, m)
	}
	c := newClient(t, rc, q)
	if _, err := redisrpc.Call(timeout(t, 5*time.Second), c, nap, 0); err != nil {
		t.Fatal(err)
	}
	failed := 0
	for i := range 4 {
		long := make(chan struct{})
		go func() { redisrpc.Call(timeout(t, 5*time.Second), c, nap, 1200); close(long) }()
		time.Sleep(50 * time.Millisecond) // one server runs it; the other is idle
		start := time.Now()
		if _, err := redisrpc.Call(timeout(t, 600*time.Millisecond), c, nap, 1); err != nil {
			failed++
			t.Logf("trial %d: a 1 ms call beside an idle server: %v after %v", i, err, time.Since(start).Round(time.Millisecond))
		}
		<-long
		time.Sleep(time.Duration(i) * 230 * time.Millisecond) // vary the pops' phase
	}
	if failed > 0 {
		t.Errorf("%d of 4 calls of 1 ms, made while one of two servers ran a 1.2 s handler and the other was idle, hit their 600 ms deadline; want each served by the idle server", failed)
	}
}

type order struct {
	Item     string `json:"item"`
	Quantity int    `json:"quantity"`
	Lines    []struct {
		SKU string `json:"sku"`
	} `json:"lines,omitempty"`
}

// TestStrictDecoding: WithStrictDecoding answers a request with members the
// handler's type lacks, at any depth, with invalid_argument naming them all,
// and runs none; members that match without regard to case are read; a Mux
// without it ignores them.
func TestStrictDecoding(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	ctx := timeout(t, 10*time.Second)
	place := redisrpc.NewEndpoint[order, int]("place")
	raw := redisrpc.NewEndpoint[json.RawMessage, int]("place")
	for _, strict := range []bool{true, false} {
		q := newQueue(t)
		opts := []redisrpc.MuxOption{redisrpc.WithLogger(quiet)}
		if strict {
			opts = append(opts, redisrpc.WithStrictDecoding())
		}
		mux := redisrpc.NewMux(rc, q, opts...)
		var ran atomic.Int64
		redisrpc.Handle(mux, place, func(_ context.Context, o order) (int, error) { ran.Add(1); return o.Quantity, nil })
		serve(t, mux)
		c := newClient(t, rc, q)
		got, err := redisrpc.Call(ctx, c, raw, json.RawMessage(`{"ITEM":"tea","Quantity":2,"lines":[{"sku":"a"}]}`))
		if err != nil || got != 2 {
			t.Fatalf("strict %v, case folded members: got %d, %v; want 2", strict, got, err)
		}
		_, err = redisrpc.Call(ctx, c, raw, json.RawMessage(`{"item":"tea","qty":2,"lines":[{"sku":"a","qty":1}]}`))
		if !strict {
			if err != nil {
				t.Errorf("without WithStrictDecoding: got %v, want unknown members ignored", err)
			}
			continue
		}
		want := `place: the request has the members "lines[].qty" and "qty", which redisrpc_test.order lacks`
		var rerr *redisrpc.Error
		if !errors.As(err, &rerr) || rerr.Code != redisrpc.CodeInvalidArgument || rerr.Message != want {
			t.Errorf("got %v, want invalid_argument: %s", err, want)
		}
		if ran.Load() != 1 {
			t.Errorf("the handler ran %d times, want 1: not for the request with unknown members", ran.Load())
		}
	}
}

// TestStrictContractAddedMember: a server whose response has a member the
// client's type lacks breaks nothing: the strict client's calls go on, and
// the drift is logged.
func TestStrictContractAddedMember(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	ctx := timeout(t, 10*time.Second)
	type reply struct {
		ID string `json:"id"`
	}
	type replyWithETA struct {
		ID  string `json:"id"`
		ETA int    `json:"eta"`
	}
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	redisrpc.Handle(mux, redisrpc.NewEndpoint[string, replyWithETA]("ship"), func(_ context.Context, id string) (replyWithETA, error) {
		return replyWithETA{ID: id, ETA: 3}, nil
	})
	serve(t, mux)
	var mu sync.Mutex
	var out bytes.Buffer
	c := newClient(t, rc, q, redisrpc.WithStrictContract(), redisrpc.WithLogger(slog.New(slog.NewTextHandler(lockedWriter{&mu, &out}, nil))))
	got, err := redisrpc.Call(ctx, c, redisrpc.NewEndpoint[string, reply]("ship"), "p1")
	if err != nil || got.ID != "p1" {
		t.Fatalf("got %+v, %v; want p1", got, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := `ship: the server sends \"eta\", which the client's response type lacks`; !strings.Contains(out.String(), want) {
		t.Errorf("got log %q, want %s", out.String(), want)
	}
}

// TestHealthHandler: the probes of a Mux before Serve, serving, with every
// slot busy, with its Redis gone, and after Shutdown.
func TestHealthHandler(t *testing.T) {
	t.Parallel()
	redis, rc, err := localredis.StartWithClient(localredis.Embedded) // its own, to stop
	if err != nil {
		t.Fatal(err)
	}
	defer redis.Close()
	defer rc.Close()
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithConcurrency(1), redisrpc.WithHeartbeat(300*time.Millisecond))
	hold := make(chan struct{})
	redisrpc.Handle(mux, redisrpc.NewEndpoint[int, int]("hold"), func(ctx context.Context, n int) (int, error) {
		<-hold
		return n, nil
	})
	probes := mux.HealthHandler()
	probe := func(path string) (int, string) {
		w := httptest.NewRecorder()
		probes.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		return w.Code, w.Body.String()
	}
	want := func(when string, live, ready int, body string) {
		t.Helper()
		if code, got := probe("/livez"); code != live {
			t.Errorf("%s: /livez got %d %q, want %d", when, code, got, live)
		}
		if code, got := probe("/readyz"); code != ready || !strings.Contains(got, body) {
			t.Errorf("%s: /readyz got %d %q, want %d %q", when, code, got, ready, body)
		}
	}
	want("before Serve", 503, 503, "not serving")

	served := make(chan error, 1)
	go func() { served <- mux.Serve(context.Background()) }()
	<-mux.Ready()
	want("serving", 200, 200, "ok "+q+": serving")

	c := newClient(t, rc, q)
	called := make(chan error, 1)
	go func() {
		_, err := redisrpc.Call(timeout(t, 10*time.Second), c, redisrpc.NewEndpoint[int, int]("hold"), 1)
		called <- err
	}()
	waitFor(t, func() bool { return mux.Stats().InFlight == 1 })
	want("every slot busy", 200, 200, "every slot busy")
	close(hold)
	if err := <-called; err != nil {
		t.Fatal(err)
	}

	redis.Close()
	waitFor(t, func() bool { code, _ := probe("/readyz"); return code == 503 })
	want("Redis gone", 200, 503, "not registered")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	mux.Shutdown(ctx)
	<-served
	want("after Shutdown", 503, 503, "not serving")
}

// waitFor waits up to 5 s for cond.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
