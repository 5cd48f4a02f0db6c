package inspect_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/inspect"
	"github.com/redisrpc/redisrpc/internal/keys"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// waitDead polls until queue has n dead letters, and returns them.
func waitDead(t *testing.T, ctx context.Context, rc rueidis.Client, queue string, n int) []inspect.DeadLetter {
	t.Helper()
	for {
		dead, err := inspect.DeadLetters(ctx, rc, queue)
		if err != nil {
			t.Fatal(err)
		}
		if len(dead) >= n {
			return dead
		}
		select {
		case <-ctx.Done():
			t.Fatalf("dead letters of %s: got %d, want %d", queue, len(dead), n)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestDeadLetterAnswered: a server that makes requests dead letters marks
// those whose callers it answers with internal, and no other; Requeue
// refuses those without WithAnswered, and requeues the others.
func TestDeadLetterAnswered(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := redisrpctest.Queue(t)
	ctx := timeout(t, 10*time.Second)
	later, earlier := time.Now().Add(time.Minute).UnixMilli(), time.Now().Add(-time.Minute).UnixMilli()
	requests := map[string]string{ // by id
		"waits":     fmt.Sprintf(`{"function_call":{"name":"add","args":[1]},"response_queue":"%s:rpc:waits","id":"waits","deadline":%d}`, q, later),
		"forever":   fmt.Sprintf(`{"function_call":{"name":"add","args":[1]},"response_queue":"%s:rpc:forever","id":"forever"}`, q),
		"late":      fmt.Sprintf(`{"function_call":{"name":"add","args":[1]},"response_queue":"%s:rpc:late","id":"late","deadline":%d}`, q, earlier),
		"nowhere":   fmt.Sprintf(`{"function_call":{"name":"add","args":[1]},"id":"nowhere","deadline":%d}`, later),
		"elsewhere": fmt.Sprintf(`{"function_call":{"name":"add","args":[1]},"response_queue":"%s.x:rpc:e","id":"elsewhere","deadline":%d}`, q, later),
	}
	wantAnswered := map[string]bool{"waits": true, "forever": true}
	// A server that died holding them, its lease long run out.
	for _, req := range requests {
		if err := rc.Do(ctx, rc.B().Rpush().Key(keys.Processing(q, "gone")).Element(req).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rc.Do(ctx, rc.B().Zadd().Key(keys.Leases(q)).ScoreMember().ScoreMember(1, "gone").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	mux := redisrpc.NewMux(rc, q, redisrpc.WithMaxDeliveries(1), redisrpc.WithHeartbeat(300*time.Millisecond), redisrpc.WithLogger(quiet))
	redisrpc.Handle(mux, add, func(_ context.Context, x float64) (float64, error) { return x + 1, nil })
	served := make(chan error, 1)
	go func() { served <- mux.Serve(context.Background()) }()
	dead := waitDead(t, ctx, rc, q, len(requests))
	for id := range wantAnswered { // the server told them
		got, err := rc.Do(ctx, rc.B().Blpop().Key(q+":rpc:"+id).Timeout(5).Build()).AsStrSlice()
		if err != nil || !strings.Contains(got[1], `"code":"internal"`) {
			t.Errorf("the caller of %s: got %q, %v; want internal", id, got, err)
		}
	}
	if err := mux.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	<-served
	if n, _ := rc.Do(ctx, rc.B().Llen().Key(q+":rpc:late").Build()).AsInt64(); n != 0 {
		t.Errorf("the caller whose deadline passed got %d answers, want none", n)
	}
	stored, _ := rc.Do(ctx, rc.B().Lrange().Key(keys.Dead(q)).Start(0).Stop(-1).Build()).AsStrSlice()
	for _, s := range stored {
		if !strings.Contains(s, `"answered":`) {
			t.Errorf("a dead letter as stored has no answered mark: %s", s)
		}
	}

	byID := map[string]inspect.DeadLetter{}
	for _, d := range dead {
		byID[d.ID] = d
		if d.Answered != wantAnswered[d.ID] {
			t.Errorf("dead letter %s: got Answered %v, want %v", d.ID, d.Answered, wantAnswered[d.ID])
		}
	}
	if err := inspect.Requeue(ctx, rc, byID["waits"]); !errors.Is(err, inspect.ErrAnswered) {
		t.Errorf("Requeue of an answered dead letter: got %v, want ErrAnswered", err)
	}
	if err := inspect.Requeue(ctx, rc, byID["late"]); err != nil {
		t.Errorf("Requeue of a dead letter whose caller was not answered: got %v, want nil", err)
	}
	if err := inspect.Requeue(ctx, rc, byID["waits"], inspect.WithAnswered()); err != nil {
		t.Errorf("Requeue WithAnswered: got %v, want nil", err)
	}
	got, _ := rc.Do(ctx, rc.B().Lrange().Key(q).Start(0).Stop(-1).Build()).AsStrSlice()
	if want := []string{requests["late"], requests["waits"]}; !slices.Equal(got, want) {
		t.Errorf("the queue after the requeues: got %q, want %q", got, want)
	}
}

// TestRequeueTheOneRead: Requeue acts on the dead letter it is given, not on
// one that arrived since it was read and took its place; its Ref stays the
// same; a second Requeue of it finds it gone.
func TestRequeueTheOneRead(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := redisrpctest.Queue(t)
	ctx := timeout(t, 5*time.Second)
	push := func(id string) string {
		req := fmt.Sprintf(`{"function_call":{"name":"add","args":[1]},"id":"%s"}`, id)
		entry, _ := json.Marshal(map[string]any{"request": req, "why": "delivered too often", "deliveries": 3, "at": time.Now().UnixMilli(), "server": "S1"})
		if err := rc.Do(ctx, rc.B().Lpush().Key(keys.Dead(q)).Element(string(entry)).Build()).Error(); err != nil {
			t.Fatal(err)
		}
		return req
	}
	seen := push("seen")
	read, err := inspect.DeadLetters(ctx, rc, q)
	if err != nil || len(read) != 1 || len(read[0].Ref) != 12 {
		t.Fatalf("DeadLetters: got %+v, %v; want one with a Ref of 12 digits", read, err)
	}
	push("newer")
	now, _ := inspect.DeadLetters(ctx, rc, q)
	if len(now) != 2 || now[1].ID != "seen" || now[1].Ref != read[0].Ref || now[0].Ref == read[0].Ref {
		t.Errorf("after another arrived: got %+v, want it first and the one read, with its Ref, second", now)
	}
	if err := inspect.Requeue(ctx, rc, read[0]); err != nil {
		t.Fatal(err)
	}
	if got, _ := rc.Do(ctx, rc.B().Lrange().Key(q).Start(0).Stop(-1).Build()).AsStrSlice(); !slices.Equal(got, []string{seen}) {
		t.Errorf("requeued: got %q, want the one read, %q", got, seen)
	}
	if err := inspect.Requeue(ctx, rc, read[0]); !errors.Is(err, inspect.ErrGone) {
		t.Errorf("a second Requeue: got %v, want ErrGone", err)
	}
	if left, _ := inspect.DeadLetters(ctx, rc, q); len(left) != 1 || left[0].ID != "newer" {
		t.Errorf("left: got %+v, want the newer one", left)
	}
}
