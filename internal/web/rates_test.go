package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/internal/web"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

// TestRatesBetweenBeats: with the default heartbeat, whose beats publish the
// counts every 3.3 s, the page's rate under a steady load is the rate
// between the beats, at every refresh, not 0 between them.
func TestRatesBetweenBeats(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for three beats of the default heartbeat")
	}
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := redisrpctest.Queue(t)
	add := redisrpc.NewEndpoint[int, int]("add")
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet)) // default heartbeat
	redisrpc.Handle(mux, add, func(_ context.Context, x int) (int, error) { return x + 1, nil })
	redisrpctest.Serve(t, mux)
	c := redisrpc.NewClient(rc, q)
	defer c.Close()
	loadCtx, stopLoad := context.WithCancel(context.Background())
	var calls atomic.Int64
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		for loadCtx.Err() == nil {
			if _, err := redisrpc.Call(loadCtx, c, add, 1); err == nil {
				calls.Add(1)
			}
		}
	}()
	defer func() { stopLoad(); <-loaded }()
	url := dashboard(t, rc)
	start := time.Now()

	rate := func() float64 {
		resp, err := http.Get(url + "/api/state")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st web.State
		json.NewDecoder(resp.Body).Decode(&st)
		for _, svc := range st.Services {
			if svc.Queue == q {
				return svc.Rate
			}
		}
		return 0
	}
	// Two beats after the load began, the page has a rate; from then on it
	// has one at every refresh, through the next beat.
	var first time.Time
	var rates []float64
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(web.Refresh / 2) {
		r := rate()
		if first.IsZero() && r > 0 {
			first = time.Now()
		}
		if !first.IsZero() {
			rates = append(rates, r)
			if time.Since(first) > 4*time.Second {
				break
			}
		}
	}
	if first.IsZero() {
		t.Fatalf("no rate within 15 s")
	}
	actual := float64(calls.Load()) / time.Since(start).Seconds()
	t.Logf("rates from %v on, every %v: %.0f (the client's: %.0f calls/s)", first.Sub(start).Round(time.Millisecond), web.Refresh/2, rates, actual)
	for i, r := range rates {
		if r < actual/3 || r > actual*3 {
			t.Errorf("rate %d of %d: got %.0f, want about %.0f, what the client measured", i, len(rates), r, actual)
		}
	}
}
