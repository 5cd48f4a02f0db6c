package faults_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc"
)

// TestHealthAfterRestart: Serve may be called again after it returned (its
// ctx ended; no Shutdown), 14 s later: the probes judge the second Serve by
// its own pops, not the first's, and /livez answers 200.
func TestHealthAfterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("14 s")
	}
	t.Parallel()
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	redisrpc.Handle(mux, redisrpc.NewEndpoint[int, int]("id"), func(_ context.Context, n int) (int, error) { return n, nil })
	probe := func(path string) (int, string) {
		w := httptest.NewRecorder()
		mux.HealthHandler().ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		return w.Code, w.Body.String()
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- mux.Serve(ctx) }()
	<-mux.Ready()
	time.Sleep(200 * time.Millisecond)
	cancel()
	<-served
	time.Sleep(14 * time.Second)

	served = make(chan error, 1)
	go func() { served <- mux.Serve(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		mux.Shutdown(ctx)
		<-served
	})
	// The first answer once the second Serve runs.
	var code int
	var body string
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if code, body = probe("/livez"); !strings.Contains(body, "not serving") {
			break
		}
	}
	if code != 200 {
		t.Errorf("/livez just after the second Serve started: got %d %q; want 200", code, body)
	}
	select {
	case err := <-served:
		t.Fatalf("the second Serve returned %v", err)
	default:
	}
}

// TestHealthRace: probes while Serve starts and Shutdown runs.
func TestHealthRace(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithConcurrency(2))
	redisrpc.Handle(mux, redisrpc.NewEndpoint[int, int]("id"), func(_ context.Context, n int) (int, error) { return n, nil })
	h := mux.HealthHandler()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, p := range []string{"/livez", "/readyz"} {
					h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", p, nil))
				}
				time.Sleep(200 * time.Microsecond) // probing, not spinning: the tests beside it time beats

			}
		})
	}
	served := make(chan error, 1)
	go func() { served <- mux.Serve(context.Background()) }()
	<-mux.Ready()
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
	defer c.Close()
	for i := range 20 {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		redisrpc.Call(cctx, c, redisrpc.NewEndpoint[int, int]("id"), i)
		cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	mux.Shutdown(ctx)
	<-served
	close(stop)
	wg.Wait()
}
