package deadline

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestWindow: contexts handed out within slack of each other are one, with a
// deadline between d and d+slack after each was handed out; later ones are
// new; the parent's cancellation reaches them; concurrent calls get working
// contexts.
func TestWindow(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	const d, slack = 200 * time.Millisecond, 50 * time.Millisecond
	w := NewWindow(parent, d, slack)
	check := func(ctx context.Context, from time.Time) {
		t.Helper()
		dl, ok := ctx.Deadline()
		if !ok || dl.Before(from.Add(d)) || dl.After(time.Now().Add(d+slack)) {
			t.Errorf("deadline %v after handing out, want %v to %v", dl.Sub(from), d, d+slack)
		}
	}
	t0 := time.Now()
	a := w.Context()
	check(a, t0)
	t1 := time.Now()
	if b := w.Context(); b != a {
		t.Errorf("a second context within slack: got a new one")
	} else {
		check(b, t1)
	}
	time.Sleep(slack + 10*time.Millisecond)
	t2 := time.Now()
	c := w.Context()
	if c == a {
		t.Fatal("after slack: got the same context")
	}
	check(c, t2)
	select {
	case <-a.Done():
		if time.Since(t0) < d {
			t.Errorf("the first context ended after %v, before %v", time.Since(t0), d)
		}
	case <-time.After(d + slack + time.Second):
		t.Fatal("the first context did not end at its deadline")
	}
	if a.Err() != context.DeadlineExceeded {
		t.Errorf("the first context: Err %v, want DeadlineExceeded", a.Err())
	}

	var wg sync.WaitGroup
	ctxs := make([]context.Context, 64)
	for i := range ctxs {
		wg.Go(func() { ctxs[i] = w.Context() })
	}
	wg.Wait()
	cancel()
	for i, ctx := range ctxs {
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
			t.Fatalf("context %d did not end with its parent", i)
		}
		if ctx.Err() != context.Canceled {
			t.Fatalf("context %d: Err %v, want Canceled", i, ctx.Err())
		}
	}
}

// BenchmarkWindow: what a context costs a batch, against a Context armed by
// Done as rueidis arms it.
func BenchmarkWindow(b *testing.B) {
	b.Run("Window", func(b *testing.B) {
		w := NewWindow(context.Background(), 5*time.Second, time.Second)
		b.ReportAllocs()
		for b.Loop() {
			_ = w.Context().Done()
		}
	})
	b.Run("Context", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c := New(context.Background(), time.Now().Add(5*time.Second))
			c.Done()
			c.Stop()
		}
	})
}
