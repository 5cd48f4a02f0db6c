// Command shop runs a small shop of two redisrpc services, orders and
// inventory, and a customer calling them, and prints what happened: orders
// placed, one refused for want of stock (with the shortage in the error's
// details), one past its deadline, a load run, and a drain of orders in
// flight as on SIGTERM.
//
//	go run ./examples/shop          # on an embedded Redis, or REDIS_URL
//	go run ./examples/shop -trace   # and every span, as JSON lines, on stdout
//
// With -trace the story goes to stderr, so that stdout holds only spans, in
// the format of OpenTelemetry's stdouttrace exporter.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/redis/rueidis"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/internal/localredis"
	"github.com/redisrpc/redisrpc/redisrpcotel"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "shop:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("shop", flag.ContinueOnError)
	traced := fs.Bool("trace", false, "write every span as a JSON line on stdout")
	calls := fs.Int("calls", 2000, "calls in the load run")
	callers := fs.Int("callers", 32, "concurrent callers in the load run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	out := &syncWriter{w: stdout} // the story and the logs share it
	var tp trace.TracerProvider = noop.NewTracerProvider()
	if *traced {
		out.w = stderr
		exp, err := stdouttrace.New(stdouttrace.WithWriter(stdout))
		if err != nil {
			return err
		}
		sdk := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
		defer sdk.Shutdown(context.Background())
		tp = sdk
	}
	srv, err := localredis.Start(localredis.NoBinary)
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Fprintf(out, "redis: %s (%s)\n", srv.URL, srv.Kind)
	rc, err := srv.Client()
	if err != nil {
		return err
	}
	defer rc.Close()
	level := new(slog.LevelVar)
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
	s, err := start(rc, log, tp)
	if err != nil {
		return err
	}
	defer s.stop()
	return s.story(out, level, *calls, *callers)
}

// shop is the two services and a customer's client of orders.
type shop struct {
	inv      *inventory
	muxes    []*redisrpc.Mux
	served   chan error
	drained  sync.Once
	drainErr error
	customer *redisrpc.Client
	clients  []*redisrpc.Client
}

// start serves inventory and orders on rc, each with tracing and call logs.
func start(rc rueidis.Client, log *slog.Logger, tp trace.TracerProvider) (*shop, error) {
	otelx, err := redisrpcotel.NewInterceptor(redisrpcotel.WithTracerProvider(tp))
	if err != nil {
		return nil, err
	}
	ops := redisrpc.WithInterceptors(otelx, redisrpc.LogCalls(log))
	s := &shop{inv: &inventory{stock: map[string]int{"apple": 10, "pear": 1_000_000}}, served: make(chan error, 2)}

	inventoryMux := redisrpc.NewMux(rc, "inventory", ops, redisrpc.WithLogger(log))
	redisrpc.Handle(inventoryMux, ReserveStock, s.inv.reserve)
	toInventory := redisrpc.NewClient(rc, "inventory", ops, redisrpc.WithLogger(log))
	ordersMux := redisrpc.NewMux(rc, "orders", ops, redisrpc.WithLogger(log))
	redisrpc.Handle(ordersMux, PlaceOrder, (&orders{inventory: toInventory, log: log}).place)
	s.muxes = []*redisrpc.Mux{ordersMux, inventoryMux}
	for _, m := range s.muxes {
		go func() { s.served <- m.Serve(context.Background()) }()
	}
	s.customer = redisrpc.NewClient(rc, "orders", redisrpc.WithInterceptors(otelx), redisrpc.WithLogger(log))
	s.clients = []*redisrpc.Client{s.customer, toInventory}
	return s, nil
}

// drain shuts the services down as a SIGTERM would, once: orders first,
// whose handlers still call inventory, each given up to grace to finish.
func (s *shop) drain(grace time.Duration) error {
	s.drained.Do(func() {
		var errs []error
		for _, m := range s.muxes {
			ctx, cancel := context.WithTimeout(context.Background(), grace)
			errs = append(errs, m.Shutdown(ctx))
			cancel()
		}
		for range s.muxes {
			if err := <-s.served; !errors.Is(err, redisrpc.ErrServerClosed) {
				errs = append(errs, err)
			}
		}
		s.drainErr = errors.Join(errs...)
	})
	return s.drainErr
}

func (s *shop) stop() {
	s.drain(time.Second)
	for _, c := range s.clients {
		c.Close()
	}
}

// story places orders and tells what happened.
func (s *shop) story(out io.Writer, level *slog.LevelVar, calls, callers int) error {
	order := func(timeout time.Duration, o Order) (Placed, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return redisrpc.Call(ctx, s.customer, PlaceOrder, o)
	}
	fmt.Fprintln(out, "\n1. An order for 3 apples:")
	p, err := order(time.Second, Order{"apple", 3})
	if err != nil {
		return fmt.Errorf("the first order: %w", err)
	}
	fmt.Fprintf(out, "   placed %s; %d apples left\n", p.OrderID, p.Left)

	fmt.Fprintln(out, "\n2. An order for 100 apples:")
	_, err = order(time.Second, Order{"apple", 100})
	short, ok := redisrpc.ErrorDetails[Shortage](err)
	if redisrpc.CodeOf(err) != CodeOutOfStock || !ok {
		return fmt.Errorf("100 apples: got %v, want %s with details", err, CodeOutOfStock)
	}
	fmt.Fprintf(out, "   refused: %v\n   details: wanted %d, %d left\n", err, short.Wanted, short.Left)

	fmt.Fprintln(out, "\n3. An order with a 100ms deadline while the inventory takes 300ms:")
	s.inv.delay.Store(int64(300 * time.Millisecond))
	start := time.Now()
	_, err = order(100*time.Millisecond, Order{"pear", 1})
	s.inv.delay.Store(0)
	if !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("the late order: got %v, want a deadline error", err)
	}
	fmt.Fprintf(out, "   gave up after %v: %v\n", time.Since(start).Round(10*time.Millisecond), err)

	fmt.Fprintf(out, "\n4. A load run: %d orders for a pear from %d customers (call logs off):\n", calls, callers)
	level.Set(slog.LevelWarn)
	lat, failed, took := load(calls, callers, func() error { _, err := order(5*time.Second, Order{"pear", 1}); return err })
	level.Set(slog.LevelInfo)
	slices.Sort(lat)
	fmt.Fprintf(out, "   %d placed, %d failed in %v: %.0f orders/s, p50 %v, p99 %v (two hops each)\n", len(lat), failed,
		took.Round(time.Millisecond), float64(len(lat))/took.Seconds(), pct(lat, 0.5), pct(lat, 0.99))

	fmt.Fprintln(out, "\n5. SIGTERM with 20 slow orders in flight: the services drain.")
	s.inv.delay.Store(int64(200 * time.Millisecond))
	level.Set(slog.LevelWarn)
	results := make(chan error, 20)
	for range 20 {
		go func() { _, err := order(5*time.Second, Order{"pear", 1}); results <- err }()
	}
	time.Sleep(50 * time.Millisecond) // in flight
	signalled := make(chan os.Signal, 1)
	signal.Notify(signalled, syscall.SIGTERM)
	defer signal.Stop(signalled)
	self, _ := os.FindProcess(os.Getpid())
	if err := self.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("sending SIGTERM: %w", err)
	}
	<-signalled
	if err := s.drain(10 * time.Second); err != nil {
		return fmt.Errorf("draining: %w", err)
	}
	done := 0
	for range 20 {
		if err := <-results; err == nil {
			done++
		}
	}
	fmt.Fprintf(out, "   drained: %d of 20 orders in flight completed, none lost\n", done)
	if done != 20 {
		return fmt.Errorf("%d of 20 orders in flight failed during the drain", 20-done)
	}
	return nil
}

// syncWriter writes for several goroutines, one write at a time.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// load makes n calls of f from callers goroutines and returns the latencies
// of those that succeeded, how many failed, and how long it all took.
func load(n, callers int, f func() error) ([]time.Duration, int, time.Duration) {
	var mu sync.Mutex
	var lat []time.Duration
	failed := 0
	work := make(chan struct{}, n)
	for range n {
		work <- struct{}{}
	}
	close(work)
	start := time.Now()
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range work {
				t := time.Now()
				err := f()
				mu.Lock()
				if err != nil {
					failed++
				} else {
					lat = append(lat, time.Since(t))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return lat, failed, time.Since(start)
}

func pct(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1))].Round(10 * time.Microsecond)
}
