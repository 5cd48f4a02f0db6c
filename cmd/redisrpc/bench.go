package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redisrpc/redisrpc"
)

func cmdBench(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	callers := fs.Int("c", 16, "concurrent callers")
	duration := fs.Duration("d", 10*time.Second, "how long to call")
	timeout := fs.Duration("timeout", 10*time.Second, "deadline of each call")
	kwargs := fs.String("kwargs", "", "named arguments, a JSON object, instead of ARGs")
	meta := metaFlag{}
	fs.Var(meta, "meta", "`key=value` metadata to send with each call; repeatable")
	rest, err := e.parse(fs, args, 2, "QUEUE FUNCTION [ARG ...]")
	if err != nil {
		return err
	}
	if *callers < 1 || *duration <= 0 {
		return usagef("-c must be at least 1 and -d more than 0")
	}
	queue, function := rest[0], rest[1]
	makeCall, err := newCaller(function, rest[2:], *kwargs)
	if err != nil {
		return err
	}
	rc, err := e.connect()
	if err != nil {
		return err
	}
	c := redisrpc.NewClient(rc, queue, redisrpc.WithFailFast())
	defer c.Close()
	call := makeCall(c)
	ctx = meta.with(ctx)
	// One call first: a service that cannot answer is told at once.
	cctx, cancel := context.WithTimeout(ctx, *timeout)
	_, err = call(cctx)
	cancel()
	if err != nil {
		return e.callFailed(queue, err, *timeout)
	}

	ctx, stop := context.WithTimeout(ctx, *duration)
	defer stop()
	var (
		mu     sync.Mutex
		lat    []time.Duration
		failed atomic.Int64
		done   atomic.Int64
		wg     sync.WaitGroup
	)
	start := time.Now()
	for range *callers {
		wg.Go(func() {
			var mine []time.Duration
			for ctx.Err() == nil {
				t := time.Now()
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), *timeout)
				_, err := call(cctx)
				cancel()
				if err != nil {
					failed.Add(1)
					continue
				}
				mine = append(mine, time.Since(t))
				done.Add(1)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	fmt.Fprintf(e.stderr, "calling %s %s from %d callers for %v\n", queue, function, *callers, *duration)
	tick := time.NewTicker(time.Second)
	var last int64
	lastAt := start
	progress := func(now time.Time) {
		n := done.Load()
		fmt.Fprintf(e.stderr, "\r%6.1fs  %10d calls  %9.0f calls/s  %6d failed", now.Sub(start).Seconds(), n,
			float64(n-last)/max(now.Sub(lastAt).Seconds(), 1e-3), failed.Load())
		last, lastAt = n, now
	}
	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case now := <-tick.C:
			progress(now)
		}
	}
	tick.Stop()
	wg.Wait()
	progress(time.Now())
	took := time.Since(start)
	fmt.Fprintln(e.stderr)
	slices.Sort(lat)
	q := func(p float64) string {
		if len(lat) == 0 {
			return "-"
		}
		return round(lat[int(p*float64(len(lat)-1))])
	}
	fmt.Fprintf(e.stdout, "%d calls in %s from %d callers: %.0f calls/s, %d failed\nlatency: p50 %s  p90 %s  p99 %s  max %s\n",
		len(lat), round(took), *callers, float64(len(lat))/took.Seconds(), failed.Load(), q(0.5), q(0.9), q(0.99), q(1))
	if failed.Load() > 0 {
		return fmt.Errorf("%d calls failed", failed.Load())
	}
	return nil
}
