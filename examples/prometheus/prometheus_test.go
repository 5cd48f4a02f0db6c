package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc/redisrpctest"
)

// TestScrape runs the program on the tests' Redis with its client calling
// every 20 ms, scrapes /metrics as Prometheus would, and finds the
// durations of quote on both sides, their count and their failures; the
// probes answer 200.
func TestScrape(t *testing.T) {
	rc := redisrpctest.Redis(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, rc, ln, 20*time.Millisecond, io.Discard) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	base := "http://" + ln.Addr().String()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// Eight calls at least: two of them failed (qty 0).
	count := regexp.MustCompile(`(?m)^rpc_server_duration_milliseconds_count\{[^}]*rpc_method="quote"[^}]*\} (\d+)$`)
	var scrape string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, scrape = get("/metrics")
		var n int
		if m := count.FindStringSubmatch(scrape); m != nil {
			fmt.Sscan(m[1], &n)
		}
		if n >= 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 8 calls of quote in the scrape after 10 s:\n%s", scrape)
		}
	}
	for _, want := range []string{
		`rpc_client_duration_milliseconds_count{`,
		`rpc_server_duration_milliseconds_bucket{`,
		`rpc_redisrpc_code="invalid_argument"`,
	} {
		if !strings.Contains(scrape, want) {
			t.Errorf("the scrape lacks %s:\n%s", want, scrape)
		}
	}
	for _, line := range strings.Split(scrape, "\n") {
		if strings.HasPrefix(line, "rpc_server_duration_milliseconds_count") || strings.HasPrefix(line, "rpc_client_duration_milliseconds_count") {
			t.Log(line)
		}
	}
	for _, path := range []string{"/livez", "/readyz"} {
		if code, body := get(path); code != 200 || !strings.HasPrefix(body, "ok prices: serving") {
			t.Errorf("%s: got %d %q, want 200 ok prices: serving", path, code, body)
		}
	}
}
