package faults_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc"
)

// TestLoneStopRaces: a stop (Shutdown, or Serve's ctx ending)
// lands at random around a lone handler's return. The call gets its answer
// (Shutdown) or an answer or CodeUnavailable (hard stop), never silence;
// Serve returns; nothing is left in flight.
func TestLoneStopRaces(t *testing.T) {
	t.Parallel()
	c := redisrpc.NewClient(rc, newQueue(t), redisrpc.WithLogger(quiet))
	c.Close()
	for i := range 60 {
		hard := i%2 == 1
		q := newQueue(t)
		mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
		redisrpc.Handle(mux, Slow, func(ctx context.Context, ms int) (int, error) {
			select {
			case <-time.After(time.Duration(ms) * time.Microsecond):
				return ms, nil
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		})
		sctx, cancel := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() { served <- mux.Serve(sctx) }()
		<-mux.Ready()
		c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
		ctx, ccancel := context.WithTimeout(context.Background(), 8*time.Second)
		if _, err := redisrpc.Call(ctx, c, Slow, 0); err != nil {
			t.Fatal(err)
		}
		got := make(chan error, 1)
		us := 500 + rand.IntN(1500)
		go func() {
			v, err := redisrpc.Call(ctx, c, Slow, us)
			if err == nil && v != us {
				err = errors.New("wrong value")
			}
			got <- err
		}()
		time.Sleep(time.Duration(us+rand.IntN(1500)) * time.Microsecond)
		if hard {
			cancel()
		} else {
			sd, sdc := context.WithTimeout(context.Background(), 10*time.Second)
			if err := mux.Shutdown(sd); err != nil {
				t.Errorf("%d: Shutdown: %v", i, err)
			}
			sdc()
		}
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d (hard %v): Serve did not return", i, hard)
		}
		select {
		case err := <-got:
			if err != nil && (!hard || redisrpc.CodeOf(err) != redisrpc.CodeUnavailable) {
				n, _ := rc.Do(context.Background(), rc.B().Llen().Key(q).Build()).AsInt64()
				if n == 0 { // not given back to the queue: lost
					t.Errorf("%d (hard %v, %d us): the call: %v; its request is not in the queue (LLEN %d): lost", i, hard, us, err, n)
				} else {
					t.Logf("%d: the call: %v, its request given back (LLEN %d)", i, err, n)
				}
			}
		case <-time.After(9 * time.Second):
			t.Errorf("%d: no answer", i)
		}
		if st := mux.Stats(); st.InFlight != 0 {
			t.Errorf("%d: in flight after Serve: %d", i, st.InFlight)
		}
		ccancel()
		cancel()
		c.Close()
	}
}
