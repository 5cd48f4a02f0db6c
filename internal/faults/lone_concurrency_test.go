package faults_test

import (
	"context"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc"
)

// TestLoneAnswerWithOneSlot: with WithConcurrency(1), one caller making
// calls one after another to a 0 ms handler gets each answer at once. A lone
// request's answer waits in its loop for the loop's next pop, which needs a
// reservation first (run.reserve); where the sibling loop won the slot the
// handler had just released, the answer waited for the sibling's pop to end:
// PollInterval (1 s) on an idle queue, in about 1% of calls with -race. It
// now goes through the Pusher at once (found by review).
func TestLoneAnswerWithOneSlot(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	serve(t, rc, q, redisrpc.WithConcurrency(1))
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := redisrpc.Call(ctx, c, Slow, 0); err != nil {
		t.Fatal(err)
	}
	const calls = 2000
	for i := range calls {
		start := time.Now()
		if _, err := redisrpc.Call(ctx, c, Slow, 0); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if took := time.Since(start); took > 300*time.Millisecond {
			t.Fatalf("WithConcurrency(1), one caller, a 0 ms handler: call %d took %v; want it answered at once", i, took.Round(time.Millisecond))
		}
	}
}
