package faults_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

var Info = redisrpc.NewStream[int, string]("info")
var Plain = redisrpc.NewEndpoint[int, int]("plain")

func TestStreamChecks(t *testing.T) {
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithHeartbeat(300*time.Millisecond))
	ended := make(chan time.Time, 10)
	redisrpc.HandleStream(mux, Info, func(ctx context.Context, mode int, send func(string) error) error {
		info := redisrpc.CallInfoFromContext(ctx)
		switch mode {
		case 0: // deadline and meta
			d, ok := ctx.Deadline()
			send(fmt.Sprintf("%v %v %v", ok, d.Sub(info.Deadline), redisrpc.IncomingMeta(ctx)["k"]))
			return nil
		case 1: // never sends
			<-ctx.Done()
			ended <- time.Now()
			return ctx.Err()
		case 2: // panic after items
			send("a")
			panic("boom")
		case 3: // many goroutines
			var wg sync.WaitGroup
			for g := range 16 {
				wg.Go(func() {
					for i := range 500 {
						if err := send(fmt.Sprint(g*1000 + i)); err != nil {
							return
						}
					}
				})
			}
			wg.Wait()
			return nil
		case 4: // no deadline
			_, ok := ctx.Deadline()
			send(fmt.Sprint(ok))
			return nil
		}
		return nil
	})
	redisrpc.Handle(mux, Plain, func(ctx context.Context, n int) (int, error) { return n, nil })
	redisrpctest.Serve(t, mux)
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithStreamWindow(16))
	defer c.Close()

	t.Run("deadline-meta", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ctx = redisrpc.WithOutgoingMeta(ctx, map[string]string{"k": "v"})
		for s, err := range redisrpc.CallStream(ctx, c, Info, 0) {
			t.Log(s, err)
			if err != nil || s != "true 0s v" {
				t.Errorf("got %q %v", s, err)
			}
		}
		for s, err := range redisrpc.CallStream(context.Background(), c, Info, 4) {
			if err != nil || s != "false" {
				t.Errorf("no deadline: got %q %v", s, err)
			}
		}
	})
	t.Run("cancel-no-send", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		go func() { time.Sleep(500 * time.Millisecond); cancel() }()
		var last error
		for _, err := range redisrpc.CallStream(ctx, c, Info, 1) {
			last = err
		}
		at := time.Now()
		select {
		case e := <-ended:
			t.Logf("ended %v after cancel; err %v", e.Sub(at), last)
			if e.Sub(at) > 100*time.Millisecond {
				t.Errorf("ended %v after", e.Sub(at))
			}
		case <-time.After(3 * time.Second):
			t.Error("handler never ended")
		}
		if !errors.Is(last, context.Canceled) {
			t.Errorf("got %v", last)
		}
	})
	t.Run("panic", func(t *testing.T) {
		n := 0
		var last error
		for _, err := range redisrpc.CallStream(context.Background(), c, Info, 2) {
			if err != nil {
				last = err
				break
			}
			n++
		}
		if n != 1 || redisrpc.CodeOf(last) != redisrpc.CodeInternal {
			t.Errorf("got %d %v", n, last)
		}
	})
	t.Run("goroutines", func(t *testing.T) {
		seen := map[string]bool{}
		for s, err := range redisrpc.CallStream(context.Background(), c, Info, 3) {
			if err != nil {
				t.Fatal(err)
			}
			if seen[s] {
				t.Fatalf("dup %s", s)
			}
			seen[s] = true
		}
		if len(seen) != 16*500 {
			t.Errorf("got %d", len(seen))
		}
	})
	t.Run("plain-unknown", func(t *testing.T) {
		for _, err := range redisrpc.CallStream(context.Background(), c, redisrpc.NewStream[int, int]("plain"), 1) {
			if redisrpc.CodeOf(err) != redisrpc.CodeInvalidArgument {
				t.Errorf("plain: %v", err)
			}
		}
		for _, err := range redisrpc.CallStream(context.Background(), c, redisrpc.NewStream[int, int]("zzz"), 1) {
			if redisrpc.CodeOf(err) != redisrpc.CodeNotFound {
				t.Errorf("unknown: %v", err)
			}
		}
	})
}

// 64 streams and 200 calls at once on one Client all complete.
func TestStreamManyStreams(t *testing.T) {
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	redisrpc.HandleStream(mux, Ticks, ticks)
	redisrpc.Handle(mux, Plain, func(ctx context.Context, n int) (int, error) { return n, nil })
	redisrpctest.Serve(t, mux)
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithStreamWindow(64))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var bad atomic.Int64
	for range 64 {
		wg.Go(func() {
			n := 0
			for it, err := range redisrpc.CallStream(ctx, c, Ticks, tickRequest{N: 2000}) {
				if err != nil || it.Seq != n {
					bad.Add(1)
					t.Error(err, it.Seq, n)
					return
				}
				n++
			}
			if n != 2000 {
				bad.Add(1)
			}
		})
	}
	for i := range 200 {
		wg.Go(func() {
			if v, err := redisrpc.Call(ctx, c, Plain, i); err != nil || v != i {
				bad.Add(1)
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if bad.Load() > 0 {
		t.Errorf("%d failed", bad.Load())
	}
}

// fakeServer takes one request from q and answers it with msgs, %s being
// the id.
func fakeServer(t *testing.T, q string, msgs ...string) {
	go func() {
		kv, err := rc.Do(context.Background(), rc.B().Blpop().Key(q).Timeout(5).Build()).AsStrSlice()
		if err != nil {
			return
		}
		var req struct {
			ID    string `json:"id"`
			Reply string `json:"response_queue"`
		}
		json.Unmarshal([]byte(kv[1]), &req)
		for _, m := range msgs {
			rc.Do(context.Background(), rc.B().Rpush().Key(req.Reply).Element(strings.ReplaceAll(m, "%s", req.ID)).Build())
		}
	}()
}

func TestStreamHostile(t *testing.T) {
	cases := map[string][]string{
		"gap":          {`{"id":"%s","beat":300}`, `{"id":"%s","seq":0,"item":{}}`, `{"id":"%s","seq":2,"item":{}}`},
		"hugeseq":      {`{"id":"%s","beat":300}`, `{"id":"%s","seq":9223372036854775807,"item":{}}`, `{"id":"%s","seq":0,"return_value":null}`},
		"badseq":       {`{"id":"%s","beat":300}`, `{"id":"%s","seq":"x","item":{}}`},
		"hugebeat":     {`{"id":"%s","beat":1000000000000}`},
		"errgap":       {`{"id":"%s","beat":300}`, `{"id":"%s","seq":0,"item":{}}`, `{"id":"%s","seq":5,"exception":"redis broke","code":"unavailable"}`},
		"noend":        {`{"id":"%s","beat":300}`, `{"id":"%s","return_value":1}`},
		"endbeforeall": {`{"id":"%s","beat":300}`, `{"id":"%s","seq":1,"return_value":null}`, `{"id":"%s","seq":0,"item":{}}`},
	}
	for name, msgs := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			q := newQueue(t)
			c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
			defer c.Close()
			fakeServer(t, q, msgs...)
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
			defer cancel()
			start := time.Now()
			n := 0
			var last error
			for _, err := range redisrpc.CallStream(ctx, c, Ticks, tickRequest{}) {
				if err != nil {
					last = err
					break
				}
				n++
			}
			t.Logf("%s: %d items, %v after %v", name, n, last, time.Since(start).Round(time.Millisecond))
		})
	}
}
