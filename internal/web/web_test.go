package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/inspect"
	"github.com/redisrpc/redisrpc/internal/keys"
	"github.com/redisrpc/redisrpc/internal/web"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// dashboard serves the dashboard of rc, actions allowed, until the test
// ends, and returns its URL.
func dashboard(t *testing.T, rc rueidis.Client) string {
	d := web.New(rc, true, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	ts := httptest.NewServer(d.Handler())
	t.Cleanup(func() { ts.Close(); cancel(); <-done })
	return ts.URL
}

// post sends an action as the page does, and decodes the answer into out.
func post(t *testing.T, url, path string, body, out any) int {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", url+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Redisrpc-Action", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// pushDead writes a dead letter of queue as a server does, and returns its
// request.
func pushDead(t *testing.T, rc rueidis.Client, queue, id string, answered bool) string {
	t.Helper()
	req := fmt.Sprintf(`{"function_call":{"name":"charge","args":[1]},"response_queue":"%s:rpc:X","id":"%s"}`, queue, id)
	entry, _ := json.Marshal(map[string]any{"request": req, "why": "delivered too often", "deliveries": 3,
		"at": time.Now().UnixMilli(), "server": "S1", "answered": answered})
	if err := rc.Do(context.Background(), rc.B().Lpush().Key(keys.Dead(queue)).Element(string(entry)).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	return req
}

// TestRequeueByRef: /api/dead/requeue requeues the dead letters named by
// ref, not one that arrived since they were read; it refuses those whose
// callers were told they failed without force, and says which are gone.
func TestRequeueByRef(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := redisrpctest.Queue(t)
	ctx := timeout(t, 5*time.Second)
	url := dashboard(t, rc)
	seen := pushDead(t, rc, q, "seen", false)
	charged := pushDead(t, rc, q, "charged", true)
	read, err := inspect.DeadLetters(ctx, rc, q)
	if err != nil || len(read) != 2 {
		t.Fatalf("DeadLetters: got %+v, %v", read, err)
	}
	refs := map[string]string{}
	for _, d := range read {
		refs[d.ID] = d.Ref
	}
	pushDead(t, rc, q, "newer", false) // arrives after the page read the list
	type result struct {
		Requeued      int
		Gone, Refused []string
	}
	queued := func() []string {
		got, _ := rc.Do(ctx, rc.B().Lrange().Key(q).Start(0).Stop(-1).Build()).AsStrSlice()
		rc.Do(ctx, rc.B().Del().Key(q).Build())
		return got
	}
	for _, step := range []struct {
		name   string
		body   map[string]any
		want   result
		queued []string
	}{
		{"the one read", map[string]any{"queue": q, "refs": []string{refs["seen"]}}, result{1, []string{}, []string{}}, []string{seen}},
		{"again", map[string]any{"queue": q, "refs": []string{refs["seen"]}}, result{0, []string{refs["seen"]}, []string{}}, nil},
		{"an answered one", map[string]any{"queue": q, "refs": []string{refs["charged"]}}, result{0, []string{}, []string{refs["charged"]}}, nil},
		{"forced", map[string]any{"queue": q, "refs": []string{refs["charged"]}, "force": true}, result{1, []string{}, []string{}}, []string{charged}},
	} {
		var got result
		if code := post(t, url, "/api/dead/requeue", step.body, &got); code != http.StatusOK ||
			got.Requeued != step.want.Requeued || !slices.Equal(got.Gone, step.want.Gone) || !slices.Equal(got.Refused, step.want.Refused) {
			t.Errorf("requeue %s: got %d, %+v; want 200, %+v", step.name, code, got, step.want)
		}
		if got := queued(); !slices.Equal(got, step.queued) {
			t.Errorf("requeue %s: queued %q, want %q", step.name, got, step.queued)
		}
	}
	if left, _ := inspect.DeadLetters(ctx, rc, q); len(left) != 1 || left[0].ID != "newer" {
		t.Errorf("dead letters left: got %+v, want the newer one", left)
	}
	if code := post(t, url, "/api/dead/requeue", map[string]any{"queue": q}, nil); code != http.StatusBadRequest {
		t.Errorf("requeue without refs: got %d, want 400", code)
	}
}
