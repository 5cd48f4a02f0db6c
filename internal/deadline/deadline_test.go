package deadline_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc/internal/deadline"
)

type key struct{}

// Each case does the same to a deadline.Context and to context.WithDeadline,
// and the two must then agree on Err, Cause, whether Done is closed, and the
// parent's value.
func TestBehavesAsWithDeadline(t *testing.T) {
	t.Parallel()
	past := -time.Millisecond
	cases := []struct {
		name   string
		in     time.Duration // deadline from now
		before func(ctx context.Context)
		parent bool // cancel the parent
		stop   bool
		wait   time.Duration
		// The one difference: where the deadline has passed and the parent is
		// done before anything looks, Err tells the parent's reason, as
		// context.WithDeadline does only where the parent was first.
		differs bool
	}{
		{name: "open", in: time.Hour},
		{name: "past, never waited on", in: past},
		{name: "past, waited on", in: past, before: func(ctx context.Context) { ctx.Done() }},
		{name: "passes while open", in: 20 * time.Millisecond, wait: 40 * time.Millisecond},
		{name: "passes after Done", in: 20 * time.Millisecond, before: func(ctx context.Context) { ctx.Done() }, wait: 40 * time.Millisecond},
		{name: "parent cancelled", in: time.Hour, parent: true},
		{name: "parent cancelled after Done", in: time.Hour, before: func(ctx context.Context) { ctx.Done() }, parent: true},
		{name: "stopped", in: time.Hour, stop: true},
		{name: "stopped after Done", in: time.Hour, before: func(ctx context.Context) { ctx.Done() }, stop: true},
		{name: "stopped after Value", in: time.Hour, before: func(ctx context.Context) { ctx.Value(key{}) }, stop: true},
		{name: "parent cancelled, then past", in: 20 * time.Millisecond, parent: true, wait: 40 * time.Millisecond},
		{name: "past, then parent cancelled", in: past, parent: true, differs: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			type probe struct {
				err, cause error
				done       bool
				value      any
				deadline   bool // Deadline gives d
			}
			run := func(make func(context.Context, time.Time) (context.Context, func())) probe {
				d := time.Now().Add(tc.in)
				parent, cancelParent := context.WithCancelCause(context.WithValue(context.Background(), key{}, "v"))
				defer cancelParent(nil)
				ctx, stop := make(parent, d)
				defer stop()
				if tc.before != nil {
					tc.before(ctx)
				}
				if tc.parent {
					cancelParent(errors.New("parent's cause"))
				}
				if tc.stop {
					stop()
				}
				time.Sleep(tc.wait)
				// Err and Cause first: Done may arm a timer, and they must not need it.
				p := probe{err: ctx.Err(), cause: context.Cause(ctx), value: ctx.Value(key{})}
				dl, ok := ctx.Deadline()
				p.deadline = ok && dl.Equal(d)
				select {
				case <-ctx.Done():
					p.done = true
				default:
				}
				return p
			}
			got := run(func(p context.Context, d time.Time) (context.Context, func()) {
				c := deadline.New(p, d)
				return c, c.Stop
			})
			want := run(func(p context.Context, d time.Time) (context.Context, func()) {
				return context.WithDeadline(p, d)
			})
			if tc.differs {
				want.err, want.cause = context.Canceled, errors.New("parent's cause")
			}
			if got.err != want.err || got.done != want.done || got.value != want.value || !got.deadline || !want.deadline ||
				(got.cause == nil) != (want.cause == nil) || got.cause != nil && got.cause.Error() != want.cause.Error() {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

// A context made from a deadline.Context ends at its deadline, and joins it
// directly rather than through a goroutine of the context package.
func TestChildren(t *testing.T) {
	ctx := deadline.New(context.Background(), time.Now().Add(50*time.Millisecond))
	defer ctx.Stop()
	before := runtime.NumGoroutine()
	var children []context.Context
	for range 100 {
		child, cancel := context.WithTimeout(ctx, time.Hour)
		defer cancel()
		children = append(children, child)
	}
	if n := runtime.NumGoroutine() - before; n > 10 {
		t.Errorf("got %d more goroutines for 100 children, want about none", n)
	}
	for _, child := range children {
		select {
		case <-child.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("child not done 5s after its parent's deadline")
		}
		if !errors.Is(child.Err(), context.DeadlineExceeded) {
			t.Fatalf("got child error %v, want %v", child.Err(), context.DeadlineExceeded)
		}
	}
	fired := make(chan struct{})
	context.AfterFunc(ctx, func() { close(fired) })
	select {
	case <-fired:
	case <-time.After(5 * time.Second):
		t.Fatal("AfterFunc on a done context did not run")
	}
}

// Stop ends the context even for whoever first looks after it.
func TestStopThenDone(t *testing.T) {
	t.Parallel()
	ctx := deadline.New(context.Background(), time.Now().Add(time.Hour))
	ctx.Stop()
	ctx.Stop()
	select {
	case <-ctx.Done():
	default:
		t.Fatal("Done open after Stop")
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("got %v, want %v", ctx.Err(), context.Canceled)
	}
}

// For the race detector: every method at once.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	ctx := deadline.New(context.Background(), time.Now().Add(5*time.Millisecond))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 100 {
				switch i % 4 {
				case 0:
					ctx.Err()
				case 1:
					ctx.Value(key{})
				case 2:
					<-ctx.Done()
				case 3:
					ctx.Deadline()
				}
			}
		})
	}
	wg.Wait()
	ctx.Stop()
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Errorf("got %v, want %v", ctx.Err(), context.DeadlineExceeded)
	}
}

// What a request that never waits on its context pays, against
// context.WithDeadline.
func BenchmarkRequest(b *testing.B) {
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := time.Now().Add(time.Minute)
	b.Run("deadline.New", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ctx := deadline.New(parent, d)
			ctx.Err()
			ctx.Stop()
		}
	})
	b.Run("context.WithDeadline", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ctx, cancel := context.WithDeadline(parent, d)
			ctx.Err()
			cancel()
		}
	})
}
