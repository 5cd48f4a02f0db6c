package faults_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc"
)

// TestClusterLowLoad: on Redis Cluster, sequential calls, calls of a
// classic client and CallAll are answered in both delivery modes, with and
// without shards, and nothing panics.
func TestClusterLowLoad(t *testing.T) {
	t.Parallel()
	_, c := startCluster(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		opts []redisrpc.MuxOption
	}{
		{"at-most-once", nil},
		{"at-least-once", []redisrpc.MuxOption{redisrpc.WithAtLeastOnce(), redisrpc.WithHeartbeat(time.Second)}},
		{"at-most-once/shards", []redisrpc.MuxOption{redisrpc.WithShards(3)}},
		{"at-least-once/shards", []redisrpc.MuxOption{redisrpc.WithShards(3), redisrpc.WithAtLeastOnce(), redisrpc.WithHeartbeat(time.Second)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := newQueue(t)
			serve(t, c, q, tc.opts...)
			serve(t, c, q, tc.opts...)
			client := redisrpc.NewClient(c, q, redisrpc.WithLogger(quiet))
			defer client.Close()
			classic := redisrpc.NewClient(c, q, redisrpc.WithLogger(quiet), redisrpc.WithClassicServer())
			defer classic.Close()
			for i := range 30 {
				cl := client
				if i%5 == 4 {
					cl = classic
				}
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				start := time.Now()
				got, err := redisrpc.Call(cctx, cl, Slow, i%3)
				cancel()
				if err != nil || got != i%3 || time.Since(start) > 2*time.Second {
					t.Errorf("call %d: got %d, %v after %v", i, got, err, time.Since(start).Round(time.Millisecond))
				}
				if i%3 == 0 {
					time.Sleep(50 * time.Millisecond)
				}
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			res, err := redisrpc.CallAll(cctx, client, Slow, 1)
			cancel()
			if err != nil || len(res) != 2 {
				t.Errorf("CallAll: got %d results, %v; want 2", len(res), err)
			}
			for _, r := range res {
				if r.Err != nil || r.Value != 1 {
					t.Errorf("CallAll on %s: got %d, %v", r.Server, r.Value, r.Err)
				}
			}
			// A few calls at once, batched.
			var wg sync.WaitGroup
			for i := range 20 {
				wg.Go(func() {
					cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					defer cancel()
					if got, err := redisrpc.Call(cctx, client, Slow, i); err != nil || got != i {
						t.Errorf("concurrent call %d: got %d, %v", i, got, err)
					}
				})
				time.Sleep(time.Duration(i%4) * 10 * time.Millisecond)
			}
			wg.Wait()
		})
	}
	// Queue names with odd braces, at most once: the response lists of Go
	// clients are in the queue's slot, the classic clients' are not.
	for _, name := range []string{"calc}", "jobs{}", "{calc}", "orders:{eu}", "a{b}c{d}"} {
		t.Run("odd name "+name, func(t *testing.T) {
			q := newQueue(t) + name
			serve(t, c, q)
			client := redisrpc.NewClient(c, q, redisrpc.WithLogger(quiet))
			defer client.Close()
			classic := redisrpc.NewClient(c, q, redisrpc.WithLogger(quiet), redisrpc.WithClassicServer())
			defer classic.Close()
			for i := range 10 {
				cl := client
				if i%3 == 2 {
					cl = classic
				}
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				if got, err := redisrpc.Call(cctx, cl, Slow, i); err != nil || got != i {
					t.Errorf("%s: call %d: got %d, %v", q, i, got, err)
				}
				cancel()
			}
		})
	}
}
