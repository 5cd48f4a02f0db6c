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
	"regexp"
	"slices"
	"strings"
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

// get sends a GET to url+path with Host host, and returns the response.
func get(t *testing.T, url, path, host string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", url+path, nil)
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestHostNames: the dashboard answers only under names it listens on:
// loopback names, IP addresses and the names it is given; other names, as a
// DNS rebinding attack sends, get 421. Actions from another origin get 403.
func TestHostNames(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	d := web.New(rc, true, quiet, "dash.example")
	ts := httptest.NewServer(d.Handler())
	defer ts.Close()
	port := ts.URL[strings.LastIndexByte(ts.URL, ':')+1:]
	for host, want := range map[string]int{
		"": http.StatusOK, "localhost:" + port: http.StatusOK, "LOCALHOST": http.StatusOK, "app.localhost:" + port: http.StatusOK,
		"[::1]:" + port: http.StatusOK, "10.1.2.3:" + port: http.StatusOK, "dash.example:" + port: http.StatusOK, "dash.example.": http.StatusOK,
		"attacker.example:" + port: http.StatusMisdirectedRequest, "attacker.example": http.StatusMisdirectedRequest,
		"localhost.attacker.example": http.StatusMisdirectedRequest, "dash.example.attacker.example": http.StatusMisdirectedRequest,
	} {
		for _, path := range []string{"/", "/api/state", "/app.js"} {
			if got := get(t, ts.URL, path, host).StatusCode; got != want {
				t.Errorf("GET %s with Host %q: got %d, want %d", path, host, got, want)
			}
		}
	}
	for origin, want := range map[string]int{
		"": http.StatusBadRequest, ts.URL: http.StatusBadRequest, // past the origin check: the body is wrong
		"http://attacker.example": http.StatusForbidden, "http://localhost:" + port: http.StatusForbidden, "null": http.StatusForbidden,
	} {
		req, _ := http.NewRequest("POST", ts.URL+"/api/dead/purge", strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Redisrpc-Action", "1")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("POST with Origin %q: got %d, want %d", origin, resp.StatusCode, want)
		}
	}
}

// TestFraming: every answer forbids framing, and the page's script comes
// from its files alone; the page holds no inline script for that to break.
func TestFraming(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	ts := httptest.NewServer(web.New(rc, false, quiet).Handler())
	defer ts.Close()
	for _, path := range []string{"/", "/index.html", "/app.js", "/api/state", "/nope"} {
		resp := get(t, ts.URL, path, "")
		csp := resp.Header.Get("Content-Security-Policy")
		if got := resp.Header.Get("X-Frame-Options"); got != "DENY" {
			t.Errorf("%s: X-Frame-Options %q, want DENY", path, got)
		}
		if !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: Content-Security-Policy %q, want frame-ancestors 'none' and script-src 'self' without unsafe-inline", path, csp)
		}
	}
	resp, err := http.Get(ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	scripts := regexp.MustCompile(`(?is)<script([^>]*)>(.*?)</script>`).FindAllStringSubmatch(string(page), -1)
	if len(scripts) == 0 {
		t.Errorf("the page has no script:\n%s", page)
	}
	for _, m := range scripts {
		if !strings.Contains(m[1], "src=") || strings.TrimSpace(m[2]) != "" {
			t.Errorf("the page has an inline script: %q", m[0])
		}
	}
	if m := regexp.MustCompile(`(?i)<[^>]+\son[a-z]+\s*=|javascript:|<[^>]+\sstyle\s*=`).Find(page); m != nil {
		t.Errorf("the page has inline script or style: %q", m)
	}
}

// TestCallOnlyServices: the page calls only the services it lists; a call
// to another queue is refused, and keeps no client.
func TestCallOnlyServices(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	url := dashboard(t, rc)
	for i := range 3 {
		var out map[string]any
		body := map[string]any{"queue": fmt.Sprintf("%s.nobody.%d", redisrpctest.Queue(t), i), "function": "add", "args": []int{1}}
		if code := post(t, url, "/api/call", body, &out); code != http.StatusBadRequest || !strings.Contains(fmt.Sprint(out["error"]), "not a service") {
			t.Errorf("a call to a queue that is not a service: got %d, %v; want 400 saying so", code, out)
		}
	}
}
