package inspect_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/inspect"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

var (
	add  = redisrpc.NewEndpoint[float64, float64]("add")
	hold = redisrpc.NewEndpoint[string, string]("hold")
)

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestInspect: a server is in the registry while it serves, with what it is,
// its functions and their types, and its counts; the queue's depth, oldest
// request and processing lists are read from Redis; a server that stops
// leaves at once.
func TestInspect(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"at-most-once", "at-least-once"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			rc := redisrpctest.Redis(t)
			q := redisrpctest.Queue(t)
			opts := []redisrpc.MuxOption{redisrpc.WithHeartbeat(300 * time.Millisecond), redisrpc.WithConcurrency(7), redisrpc.WithMaxMessageSize(5000)}
			if mode == "at-least-once" {
				opts = append(opts, redisrpc.WithAtLeastOnce())
			}
			mux := redisrpc.NewMux(rc, q, opts...)
			release := make(chan struct{})
			redisrpc.Handle(mux, add, func(_ context.Context, x float64) (float64, error) {
				if x < 0 {
					return 0, redisrpc.NewError(redisrpc.CodeInvalidArgument, "negative")
				}
				return x + 1, nil
			})
			redisrpc.Handle(mux, hold, func(_ context.Context, s string) (string, error) {
				<-release
				return s, nil
			})
			served := make(chan error, 1)
			go func() { served <- mux.Serve(context.Background()) }()
			c := redisrpc.NewClient(rc, q)
			defer c.Close()
			ctx := timeout(t, 10*time.Second)
			for i := range 5 {
				redisrpc.Call(ctx, c, add, float64(i))
			}
			redisrpc.Call(ctx, c, add, -1)
			held := make(chan error, 1)
			go func() { _, err := redisrpc.Call(ctx, c, hold, "x"); held <- err }()
			time.Sleep(400 * time.Millisecond) // a beat after the calls

			services, err := inspect.Services(ctx, rc)
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(services, func(s inspect.Service) bool { return s.Queue == q })
			if i < 0 || services[i].Servers != 1 || !slices.Equal(services[i].Functions, []string{"add", "hold"}) {
				t.Fatalf("Services: got %+v, want %s with 1 server and add, hold", services, q)
			}
			got, err := inspect.Inspect(ctx, rc, q)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Servers) != 1 {
				t.Fatalf("servers: got %+v, want 1", got.Servers)
			}
			s := got.Servers[0]
			if s.Mode != mode || s.Concurrency != 7 || s.Shards != 1 || s.MaxMessage != 5000 || s.Heartbeat != 300*time.Millisecond ||
				s.PID == 0 || s.Host == "" || s.Version == "" || time.Since(s.Started) > time.Minute || time.Since(s.Updated) > time.Second || s.InFlight != 1 {
				t.Errorf("the server: got %+v", s)
			}
			want := []inspect.Function{
				{Name: "add", Request: "float64", Response: "float64", RequestSchema: schemaOf("number"), ResponseSchema: schemaOf("number")},
				{Name: "hold", Request: "string", Response: "string", RequestSchema: schemaOf("string"), ResponseSchema: schemaOf("string")},
			}
			if !slices.EqualFunc(got.Functions, want, sameFunction) {
				t.Errorf("functions: got %+v, want %+v", got.Functions, want)
			}
			st := got.Stats["add"]
			if st.Calls != 6 || st.Errors["invalid_argument"] != 1 || st.P99 <= 0 || st.P50 > st.P99 {
				t.Errorf("add's counts: got %+v, want 6 calls, 1 invalid_argument, percentiles", st)
			}
			var holding int64
			for _, p := range got.Processing {
				holding += p.Requests
				if p.Server != s.ID || !p.Live {
					t.Errorf("processing: %+v, want the live server's", p)
				}
			}
			if wantHeld := map[string]int64{"at-most-once": 0, "at-least-once": 1}[mode]; holding != wantHeld {
				t.Errorf("requests held in processing lists: got %d, want %d", holding, wantHeld)
			}
			close(release)
			if err := <-held; err != nil {
				t.Fatal(err)
			}

			start := time.Now()
			if err := mux.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			<-served
			if got, err := inspect.Inspect(ctx, rc, q); err != nil || len(got.Servers) != 0 {
				t.Errorf("after Shutdown (%v): got %+v, %v; want no server", time.Since(start), got.Servers, err)
			}
		})
	}
}

// TestDepthAndOldest: requests waiting with nobody to serve them are
// counted, and the oldest is dated from its sent member.
func TestDepthAndOldest(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := redisrpctest.Queue(t)
	c := redisrpc.NewClient(rc, q)
	defer c.Close()
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		redisrpc.Call(ctx, c, add, 1)
		cancel()
	}
	time.Sleep(200 * time.Millisecond)
	got, err := inspect.Inspect(context.Background(), rc, q)
	if err != nil {
		t.Fatal(err)
	}
	if got.Depth != 3 || got.Oldest < 400*time.Millisecond || got.Oldest > 5*time.Second || len(got.Servers) != 0 {
		t.Errorf("an unserved queue: depth %d, oldest %v, %d servers; want 3, about 500ms, 0", got.Depth, got.Oldest, len(got.Servers))
	}
}

// TestFailFast: a Client made WithFailFast fails at once while no server is
// live, and calls once one is.
func TestFailFast(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := redisrpctest.Queue(t)
	c := redisrpc.NewClient(rc, q, redisrpc.WithFailFast())
	defer c.Close()
	ctx := timeout(t, 10*time.Second)
	start := time.Now()
	_, err := redisrpc.Call(ctx, c, add, 1)
	if took := time.Since(start); redisrpc.CodeOf(err) != redisrpc.CodeUnavailable || took > time.Second {
		t.Fatalf("a call with no server: got %v after %v, want unavailable at once", err, took)
	}
	t.Logf("failed fast after %v: %v", time.Since(start).Round(time.Microsecond), err)
	mux := redisrpc.NewMux(rc, q)
	redisrpc.Handle(mux, add, func(_ context.Context, x float64) (float64, error) { return x + 1, nil })
	redisrpctest.Serve(t, mux)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got, err := redisrpc.Call(ctx, c, add, 1)
		if err == nil && got == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls once a server runs: got %v, %v", got, err)
		}
	}
	plain := redisrpc.NewClient(rc, q+":nobody")
	defer plain.Close()
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := redisrpc.Call(cctx, plain, add, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("without WithFailFast a call waits: got %v, want its deadline", err)
	}
}

// TestReady: Mux.Ready is closed only once Serve has registered the server,
// and from then on the registry shows it.
func TestReady(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := redisrpctest.Queue(t)
	mux := redisrpc.NewMux(rc, q)
	redisrpc.Handle(mux, add, func(_ context.Context, x float64) (float64, error) { return x + 1, nil })
	select {
	case <-mux.Ready():
		t.Fatal("Ready is closed before Serve")
	case <-time.After(50 * time.Millisecond):
	}
	redisrpctest.Serve(t, mux) // waits for Ready
	got, err := inspect.Inspect(timeout(t, 5*time.Second), rc, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Servers) != 1 {
		t.Errorf("servers once Ready: got %d, want 1", len(got.Servers))
	}
}

// TestShardsAdopted: a client adopts the shard count its servers
// registered, whatever it was made with, and loses no call to a mismatch.
func TestShardsAdopted(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ server, client int }{{1, 4}, {4, 1}, {3, 3}} {
		t.Run(fmt.Sprintf("server=%d,client=%d", tt.server, tt.client), func(t *testing.T) {
			t.Parallel()
			rc := redisrpctest.Redis(t)
			q := redisrpctest.Queue(t)
			mux := redisrpc.NewMux(rc, q, redisrpc.WithShards(tt.server))
			redisrpc.Handle(mux, add, func(_ context.Context, x float64) (float64, error) { return x + 1, nil })
			redisrpctest.Serve(t, mux)
			time.Sleep(50 * time.Millisecond) // registered
			c := redisrpc.NewClient(rc, q, redisrpc.WithShards(tt.client))
			defer c.Close()
			ctx := timeout(t, 5*time.Second)
			for i := range 8 {
				if got, err := redisrpc.Call(ctx, c, add, float64(i)); err != nil || got != float64(i+1) {
					t.Errorf("call %d: got %v, %v", i, got, err)
				}
			}
		})
	}
}

// TestServersMessageLimit: a client refuses, before sending, a request over
// the limit its servers registered.
func TestServersMessageLimit(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := redisrpctest.Queue(t)
	echo := redisrpc.NewEndpoint[string, string]("echo")
	mux := redisrpc.NewMux(rc, q, redisrpc.WithMaxMessageSize(1000))
	redisrpc.Handle(mux, echo, func(_ context.Context, s string) (string, error) { return s, nil })
	redisrpctest.Serve(t, mux)
	time.Sleep(50 * time.Millisecond)
	c := redisrpc.NewClient(rc, q)
	defer c.Close()
	ctx := timeout(t, 5*time.Second)
	if _, err := redisrpc.Call(ctx, c, echo, strings.Repeat("x", 2000)); !errors.Is(err, redisrpc.ErrTooLarge) {
		t.Errorf("a request over the servers' limit: got %v, want ErrTooLarge", err)
	}
	if got, err := redisrpc.Call(ctx, c, echo, "ok"); err != nil || got != "ok" {
		t.Errorf("a small request: got %q, %v", got, err)
	}
}

// TestCallAll: every live server answers once, each from its own inbox; a
// server too slow for the deadline has the deadline's error; with no server
// there are no results.
func TestCallAll(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := redisrpctest.Queue(t)
	whoami := redisrpc.NewEndpoint[int, string]("whoami")
	c := redisrpc.NewClient(rc, q)
	defer c.Close()
	if res, err := redisrpc.CallAll(timeout(t, time.Second), c, whoami, 0); err != nil || len(res) != 0 {
		t.Fatalf("with no server: got %v, %v; want none", res, err)
	}
	var calls atomic.Int32
	for i, mode := range []redisrpc.MuxOption{redisrpc.WithShards(1), redisrpc.WithAtLeastOnce(), redisrpc.WithShards(1)} {
		mux := redisrpc.NewMux(rc, q, mode)
		redisrpc.Handle(mux, whoami, func(ctx context.Context, slow int) (string, error) {
			calls.Add(1)
			if i == 2 && slow > 0 {
				time.Sleep(time.Duration(slow) * time.Millisecond)
			}
			return fmt.Sprint("server ", i), nil
		})
		redisrpctest.Serve(t, mux)
	}
	time.Sleep(50 * time.Millisecond)
	res, err := redisrpc.CallAll(timeout(t, 5*time.Second), c, whoami, 0)
	if err != nil {
		t.Fatal(err)
	}
	var answers []string
	for _, r := range res {
		if r.Err != nil || r.Server == "" {
			t.Errorf("server %q: %v", r.Server, r.Err)
		}
		answers = append(answers, r.Value)
	}
	slices.Sort(answers)
	if want := []string{"server 0", "server 1", "server 2"}; !slices.Equal(answers, want) || calls.Load() != 3 {
		t.Errorf("answers: got %q after %d calls, want %q after 3", answers, calls.Load(), want)
	}
	res, err = redisrpc.CallAll(timeout(t, 300*time.Millisecond), c, whoami, 1000)
	if err != nil {
		t.Fatal(err)
	}
	late := 0
	for _, r := range res {
		if errors.Is(r.Err, context.DeadlineExceeded) {
			late++
		} else if r.Err != nil {
			t.Errorf("server %s: %v", r.Server, r.Err)
		}
	}
	if len(res) != 3 || late != 1 {
		t.Errorf("with one server too slow: got %d results, %d late; want 3, 1", len(res), late)
	}
}

// schemaOf is the JSON Schema a server publishes for a Go type of one JSON type.
func schemaOf(typ string) json.RawMessage {
	return json.RawMessage(`{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"` + typ + `"}`)
}

func sameFunction(a, b inspect.Function) bool {
	return a.Name == b.Name && a.Request == b.Request && a.Response == b.Response &&
		bytes.Equal(a.RequestSchema, b.RequestSchema) && bytes.Equal(a.ResponseSchema, b.ResponseSchema)
}
