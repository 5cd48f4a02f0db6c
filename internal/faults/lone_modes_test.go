package faults_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/goleak"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/internal/localredis"
)

// loneMode's request names how its handler ends (TestLoneModes).
var loneMode = redisrpc.NewEndpoint[string, int]("lone-mode")

// loneBackends runs f on the tests' Redis (a real one, where there is one)
// and on an embedded one of its own.
func loneBackends(t *testing.T, f func(t *testing.T, c rueidis.Client)) {
	t.Run("tests-redis", func(t *testing.T) {
		c, err := redis.Client()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		f(t, c)
	})
	t.Run("embedded", func(t *testing.T) {
		srv, c, err := localredis.StartWithClient(localredis.Embedded)
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		defer c.Close()
		f(t, c)
	})
}

// TestLoneModes: every way a lone request ends gets exactly one right
// answer, and nothing is left in flight; then Shutdown during a lone handler
// sends its answer; then a second Serve after a hard stop works; no
// goroutine outlives it all.
func TestLoneModes(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	loneBackends(t, func(t *testing.T, rcl rueidis.Client) {
		q := newQueue(t)
		mux := redisrpc.NewMux(rcl, q, redisrpc.WithLogger(quiet))
		redisrpc.Handle(mux, Slow, func(ctx context.Context, ms int) (int, error) {
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond):
				return ms, nil
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		})
		c := redisrpc.NewClient(rcl, q, redisrpc.WithLogger(quiet))
		defer c.Close()
		redisrpc.Handle(mux, loneMode, func(ctx context.Context, mode string) (int, error) {
			switch mode {
			case "goexit":
				runtime.Goexit()
			case "panic":
				panic("boom")
			case "error":
				return 0, redisrpc.NewError(redisrpc.CodeNotFound, "nope")
			case "nested":
				return redisrpc.Call(ctx, c, Slow, 7)
			case "all":
				rs, err := redisrpc.CallAll(ctx, c, Slow, 8)
				if err != nil {
					return 0, err
				}
				if len(rs) != 1 {
					return 0, fmt.Errorf("%d results", len(rs))
				}
				return rs[0].Value, rs[0].Err
			}
			return 1, nil
		})
		served := make(chan error, 1)
		sctx, hard := context.WithCancel(context.Background())
		go func() { served <- mux.Serve(sctx) }()
		<-mux.Ready()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		want := map[string]func(int, error) error{
			"ok":     func(v int, err error) error { return chk(v == 1 && err == nil) },
			"goexit": func(v int, err error) error { return chk(redisrpc.CodeOf(err) == redisrpc.CodeInternal) },
			"panic":  func(v int, err error) error { return chk(redisrpc.CodeOf(err) == redisrpc.CodeInternal) },
			"error":  func(v int, err error) error { return chk(redisrpc.CodeOf(err) == redisrpc.CodeNotFound) },
			"nested": func(v int, err error) error { return chk(v == 7 && err == nil) },
			"all":    func(v int, err error) error { return chk(v == 8 && err == nil) },
		}
		for round := range 3 {
			for _, mode := range []string{"ok", "goexit", "ok", "panic", "goexit", "goexit", "error", "nested", "all", "ok"} {
				start := time.Now()
				cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
				v, err := redisrpc.Call(cctx, c, loneMode, mode)
				ccancel()
				if e := want[mode](v, err); e != nil {
					t.Errorf("round %d, %s: got %d, %v", round, mode, v, err)
				}
				if took := time.Since(start); took > 500*time.Millisecond {
					t.Errorf("round %d, %s took %v", round, mode, took)
				}
			}
			if _, err := redisrpc.CallAll(ctx, c, Slow, 1); err != nil {
				t.Error(err)
			}
		}
		time.Sleep(50 * time.Millisecond)
		if st := mux.Stats(); st.InFlight != 0 || st.Taken < st.Pops {
			t.Errorf("stats: %+v", st)
		}
		// A hard stop while a lone handler runs: cut off, Serve returns.
		got := make(chan error, 1)
		go func() { _, err := redisrpc.Call(ctx, c, Slow, 5000); got <- err }()
		time.Sleep(200 * time.Millisecond)
		hard()
		select {
		case err := <-served:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Serve after hard stop: %v", err)
			}
		case <-time.After(8 * time.Second):
			t.Fatal("Serve did not return after a hard stop")
		}
		if err := <-got; err == nil {
			t.Errorf("call cut off by a hard stop: got nil error")
		}
		// Serve again.
		go func() { served <- mux.Serve(context.Background()) }()
		time.Sleep(100 * time.Millisecond)
		if v, err := redisrpc.Call(ctx, c, Slow, 3); v != 3 || err != nil {
			t.Errorf("after a second Serve: %d, %v", v, err)
		}
		// Shutdown while a lone handler runs: it finishes and is answered.
		go func() { v, err := redisrpc.Call(ctx, c, Slow, 700); got <- chk(v == 700 && err == nil, v, err) }()
		time.Sleep(200 * time.Millisecond)
		if st := mux.Stats(); st.InFlight != 1 {
			t.Errorf("in flight while one runs: %d", st.InFlight)
		}
		sd, sdc := context.WithTimeout(context.Background(), 10*time.Second)
		defer sdc()
		start := time.Now()
		if err := mux.Shutdown(sd); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("Shutdown took %v", took)
		}
		if err := <-served; !errors.Is(err, redisrpc.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
		if err := <-got; err != nil {
			t.Errorf("the call running at Shutdown: %v", err)
		}
		c.Close()
	})
}

func chk(ok bool, args ...any) error {
	if ok {
		return nil
	}
	return fmt.Errorf("unexpected %v", args)
}
