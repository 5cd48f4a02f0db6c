package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/inspect"
	"github.com/redisrpc/redisrpc/internal/keys"
	"github.com/redisrpc/redisrpc/internal/localredis"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

// realRedis returns the URL of a redis-server, or skips: the command is
// tested against the real thing.
func realRedis(t *testing.T) *localredis.Server {
	t.Helper()
	srv, err := localredis.Start(localredis.Any)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	if srv.Embedded {
		t.Skip("the redisrpc command is tested against a real Redis: set REDIS_URL or put redis-server on PATH")
	}
	return srv
}

// realRedisClient returns a redis-server, as realRedis does, and a client of
// it, closed when the test ends.
func realRedisClient(t *testing.T) (*localredis.Server, rueidis.Client) {
	t.Helper()
	srv := realRedis(t)
	rc, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.Close)
	return srv, rc
}

// cli runs the command in-process and returns its exit code and output.
func cli(t *testing.T, url string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	full := append([]string{args[0], "-url", url}, args[1:]...)
	code := run(context.Background(), full, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

var (
	greet = redisrpc.NewEndpoint[greeting, string]("greet", redisrpc.WithNamedArgs())
	sum   = redisrpc.NewEndpoint[[]float64, float64]("sum", redisrpc.WithPositionalArgs())
	order = redisrpc.NewEndpoint[int, string]("order")
)

type greeting struct {
	Name  string `json:"name"`
	Times int    `json:"times"`
}

// serveShop serves greet, sum and order on queue of the Redis at url.
func serveShop(t *testing.T, rc rueidis.Client, queue string) {
	mux := redisrpc.NewMux(rc, queue, redisrpc.WithHeartbeat(300*time.Millisecond))
	redisrpc.Handle(mux, greet, func(_ context.Context, g greeting) (string, error) {
		return strings.Repeat("hello "+g.Name+" ", g.Times), nil
	})
	redisrpc.Handle(mux, sum, func(_ context.Context, xs []float64) (float64, error) {
		var s float64
		for _, x := range xs {
			s += x
		}
		return s, nil
	})
	redisrpc.Handle(mux, order, func(_ context.Context, n int) (string, error) {
		if n > 3 {
			return "", redisrpc.NewError("out_of_stock", "only 3 left").WithDetails(map[string]int{"left": 3})
		}
		return "ok", nil
	})
	redisrpc.HandleStream(mux, countdown, func(_ context.Context, n int, send func(int) error) error {
		for i := n; i > 0; i-- {
			if err := send(i); err != nil {
				return err
			}
		}
		if n > 5 {
			return redisrpc.NewError(redisrpc.CodeInvalidArgument, "at most 5")
		}
		return nil
	})
	redisrpctest.Serve(t, mux)
}

var countdown = redisrpc.NewStream[int, int]("countdown")

func TestCall(t *testing.T) {
	srv, rc := realRedisClient(t)
	q := redisrpctest.Queue(t)
	serveShop(t, rc, q)
	for _, tt := range []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		{[]string{"call", q, "sum", "1", "2", "3.5"}, 0, "6.5\n", ""},
		{[]string{"call", q, "sum"}, 0, "0\n", ""},
		{[]string{"call", "-kwargs", `{"name":"Ann","times":2}`, q, "greet"}, 0, `"hello Ann hello Ann "` + "\n", ""},
		{[]string{"call", q, "order", "2"}, 0, `"ok"` + "\n", ""},
		{[]string{"call", q, "countdown", "3"}, 0, "3\n2\n1\n", ""},
		{[]string{"call", q, "countdown", "6"}, 1, "6\n5\n4\n3\n2\n1\n", "invalid_argument: at most 5"},
		{[]string{"call", q, "order", "5"}, 1, "", "out_of_stock: only 3 left\ndetails: {\"left\":3}\n"},
		{[]string{"call", q, "nope"}, 1, "", "not_found: no function \"nope\"\nredisrpc info " + q + " lists its functions\n"},
		{[]string{"call", q, "sum", "a", "b"}, 1, "", "invalid_argument"},
		{[]string{"call", q + ":nobody", "sum", "1"}, 1, "", "unavailable: no live server of " + q + ":nobody is registered\nstart a server"},
		{[]string{"call", "-wait", "-timeout", "200ms", q + ":nobody", "sum", "1"}, 1, "", "no answer within 200ms"},
		{[]string{"call", q}, 2, "", "want QUEUE FUNCTION"},
		{[]string{"call", "-kwargs", "[1]", q, "greet"}, 2, "", "want a JSON object"},
	} {
		code, stdout, stderr := cli(t, srv.URL, tt.args...)
		if code != tt.code || stdout != tt.stdout || !strings.Contains(stderr, tt.stderr) {
			t.Errorf("redisrpc %s:\n got %d, stdout %q, stderr %q\nwant %d, stdout %q, stderr with %q",
				strings.Join(tt.args, " "), code, stdout, stderr, tt.code, tt.stdout, tt.stderr)
		}
	}
	if code, _, stderr := cli(t, "redis://127.0.0.1:1", "ls"); code != 1 || !strings.Contains(stderr, "cannot reach Redis at redis://127.0.0.1:1") || !strings.Contains(stderr, "set -url or REDIS_URL") {
		t.Errorf("ls on a Redis that is not there: got %d, %q", code, stderr)
	}
}

func TestLsInfoStatsBench(t *testing.T) {
	srv, rc := realRedisClient(t)
	q := redisrpctest.Queue(t)
	serveShop(t, rc, q)
	code, stdout, stderr := cli(t, srv.URL, "bench", "-c", "4", "-d", "500ms", q, "sum", "1", "2")
	if code != 0 || !strings.Contains(stdout, "calls/s, 0 failed") || !strings.Contains(stdout, "latency: p50") || !strings.Contains(stderr, "calls/s") {
		t.Errorf("bench: got %d, %q, %q", code, stdout, stderr)
	}
	cli(t, srv.URL, "call", q, "order", "9")
	time.Sleep(400 * time.Millisecond) // a beat publishes the counts

	code, stdout, _ = cli(t, srv.URL, "ls")
	if code != 0 || !containsLine(stdout, q, "1", "countdown greet order sum") {
		t.Errorf("ls: got %d:\n%s\nwant a line for %s with 1 server and its functions", code, stdout, q)
	}
	code, stdout, _ = cli(t, srv.URL, "info", q)
	if code != 0 || !strings.Contains(stdout, "1 live servers") || !containsLine(stdout, "at-most-once", "64", "1048576") ||
		!containsLine(stdout, "greet", "request", "main.greeting", "{name: string, times: integer}") ||
		!containsLine(stdout, "response", "string", "string") ||
		!containsLine(stdout, "sum", "request", "[]float64", "[]number") || !containsLine(stdout, "response", "float64", "number") ||
		!containsLine(stdout, "countdown", "request", "int", "integer") || !containsLine(stdout, "stream of", "int", "integer") {
		t.Errorf("info: got %d:\n%s", code, stdout)
	}
	code, stdout, _ = cli(t, srv.URL, "stats", q)
	if code != 0 || !containsLine(stdout, "order", "1", "1", "out_of_stock 1") || !containsLine(stdout, "sum") {
		t.Errorf("stats: got %d:\n%s", code, stdout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var watch bytes.Buffer
	if code := run(ctx, []string{"stats", "-url", srv.URL, "-watch", "-interval", "500ms", q}, &watch, &watch); code != 0 ||
		strings.Count(watch.String(), "\033[2J") < 2 || !strings.Contains(watch.String(), "CALLS/S") {
		t.Errorf("stats -watch: got %d:\n%q", code, watch.String())
	}
}

// TestContract: info shows each function's members, schema prints the
// live servers' contract, and check compares them with a saved one: exit 0
// while they keep it, 1 with the drift where they break it, 0 where a change
// is compatible.
func TestContract(t *testing.T) {
	srv, rc := realRedisClient(t)
	q := redisrpctest.Queue(t)
	serveShop(t, rc, q)

	code, stdout, stderr := cli(t, srv.URL, "schema", q)
	if code != 0 {
		t.Fatalf("schema: got %d, %s", code, stderr)
	}
	var saved contractFile
	if err := json.Unmarshal([]byte(stdout), &saved); err != nil || saved.Queue != q || len(saved.Functions) != 4 {
		t.Fatalf("schema: got %v, %s; want the contract of countdown, greet, order and sum", err, stdout)
	}
	wantGreet := `{"$schema":"https://json-schema.org/draft/2020-12/schema","title":"main.greeting","type":"object",` +
		`"properties":{"name":{"type":"string"},"times":{"type":"integer"}},"required":["name","times"]}`
	if got := compact(t, saved.Functions["greet"].Request); got != wantGreet {
		t.Errorf("greet's request: got %s, want %s", got, wantGreet)
	}
	code, stdout, _ = cli(t, srv.URL, "schema", q, "greet")
	var one contractFile
	if json.Unmarshal([]byte(stdout), &one); code != 0 || len(one.Functions) != 1 || one.Functions["greet"].Request == nil {
		t.Errorf("schema %s greet: got %d, %s; want greet alone", q, code, stdout)
	}
	if code, _, stderr := cli(t, srv.URL, "schema", q, "nope"); code != 1 || !strings.Contains(stderr, "publishes a schema for nope") {
		t.Errorf("schema of a function not served: got %d, %s", code, stderr)
	}

	dir := t.TempDir()
	write := func(name string, c contractFile) string {
		b, _ := json.Marshal(c)
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	if code, stdout, stderr := cli(t, srv.URL, "check", q, write("same.json", saved)); code != 0 || stdout != "" || !strings.Contains(stderr, "keep the contract") {
		t.Errorf("check, unchanged: got %d, %q, %q; want 0", code, stdout, stderr)
	}

	// A contract whose greet sends count, not times, and whose sum reads a
	// member the server does not send; its order is unknown to the server,
	// and the server's greet answers a string where it reads an object.
	drifted := contractFile{Queue: q, Functions: map[string]contractPairs{
		"greet": {Request: json.RawMessage(strings.Replace(wantGreet, "times", "count", 2)), Response: saved.Functions["greet"].Response},
		"sum":   {Request: saved.Functions["sum"].Request, Response: json.RawMessage(`{"type":"object","properties":{"total":{"type":"number"}}}`)},
		"gone":  saved.Functions["order"],
	}}
	code, stdout, stderr = cli(t, srv.URL, "check", q, write("drifted.json", drifted))
	want := "gone: no live server serves it\n" +
		`greet: the client sends "count", which the server's request type lacks; the server reads "times", which the client never sends` + "\n" +
		"sum: the server sends a number as the response, which the client reads as an object\n" +
		"countdown: served, and not in " + filepath.Join(dir, "drifted.json") + " (compatible)\n" +
		"order: served, and not in " + filepath.Join(dir, "drifted.json") + " (compatible)\n"
	if code != 1 || stdout != want || !strings.Contains(stderr, "in 3 of its 3 functions") {
		t.Errorf("check, drifted: got %d,\n%s%s\nwant 1,\n%s", code, stdout, stderr, want)
	}

	// The server's answer has a member the contract lacks: compatible.
	added := contractFile{Queue: q, Functions: map[string]contractPairs{
		"greet": {Request: saved.Functions["greet"].Request, Response: saved.Functions["greet"].Response},
	}}
	code, _, stderr = cli(t, srv.URL, "check", q, write("added.json", added))
	if code != 0 || !strings.Contains(stderr, "keep the contract") {
		t.Errorf("check, a subset: got %d, %s; want 0", code, stderr)
	}
	if code, _, stderr := cli(t, srv.URL, "check", q, filepath.Join(dir, "missing.json")); code != 1 || !strings.Contains(stderr, "no such file") {
		t.Errorf("check, no file: got %d, %s", code, stderr)
	}
	if code, _, stderr := cli(t, srv.URL, "check", q+":nobody", write("x.json", saved)); code != 1 || !strings.Contains(stderr, "no live server") {
		t.Errorf("check, no server: got %d, %s", code, stderr)
	}
}

func compact(t *testing.T, b json.RawMessage) string {
	t.Helper()
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// TestArgumentsAndMeta: flags may follow the arguments, negative numbers
// are arguments, -meta sends metadata an interceptor reads, help and -h
// exit 0, and an argument that starts as JSON and is not is an error.
func TestArgumentsAndMeta(t *testing.T) {
	srv, rc := realRedisClient(t)
	q := redisrpctest.Queue(t)
	auth := func(next redisrpc.CallFunc) redisrpc.CallFunc {
		return func(ctx context.Context, info *redisrpc.CallInfo, req any) (any, error) {
			if info.Meta["token"] != "s3cret" {
				return nil, redisrpc.NewError("permission_denied", "no token")
			}
			return next(ctx, info, req)
		}
	}
	mux := redisrpc.NewMux(rc, q, redisrpc.WithInterceptors(auth))
	redisrpc.Handle(mux, sum, func(_ context.Context, xs []float64) (float64, error) {
		var s float64
		for _, x := range xs {
			s += x
		}
		return s, nil
	})
	redisrpctest.Serve(t, mux)
	for _, tt := range []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		{[]string{"call", q, "sum", "1", "2"}, 1, "", "permission_denied: no token"},
		{[]string{"call", "-meta", "token=s3cret", q, "sum", "1", "2"}, 0, "3\n", ""},
		{[]string{"call", q, "sum", "1", "-5", "-meta", "token=s3cret", "-timeout", "5s"}, 0, "-4\n", ""},
		{[]string{"call", q, "-meta=token=s3cret", "sum", "--", "-1", "-meta"}, 1, "", "invalid_argument"},
		{[]string{"call", q, "sum", "-meta", "token"}, 2, "", "want key=value"},
		{[]string{"call", q, "sum", "[1,"}, 2, "", "ARG 1, [1,, is not JSON"},
		{[]string{"call", q, "sum", "{x}"}, 2, "", "is not JSON"},
		{[]string{"bench", "-c", "1", "-d", "200ms", q, "sum", "1", "-meta", "token=s3cret"}, 0, "0 failed", ""},
		{[]string{"bench", "-c", "1", "-d", "200ms", q, "sum", "1"}, 1, "", "permission_denied"},
		{[]string{"call", "-h"}, 0, "", "usage: redisrpc call"},
	} {
		code, stdout, stderr := cli(t, srv.URL, tt.args...)
		if code != tt.code || !strings.Contains(stdout, tt.stdout) || (tt.stdout == "" && stdout != "") || !strings.Contains(stderr, tt.stderr) {
			t.Errorf("redisrpc %s:\n got %d, stdout %q, stderr %q\nwant %d, stdout %q, stderr with %q",
				strings.Join(tt.args, " "), code, stdout, stderr, tt.code, tt.stdout, tt.stderr)
		}
	}
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"help", "check"}} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 0 || stdout.Len()+stderr.Len() == 0 {
			t.Errorf("redisrpc %s: got %d, %q %q; want 0 and the usage", strings.Join(args, " "), code, stdout.String(), stderr.String())
		}
	}
}

// containsLine reports whether a line of out holds all of words, in order.
func containsLine(out string, words ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		rest, ok := line, true
		for _, w := range words {
			i := strings.Index(rest, w)
			if i < 0 {
				ok = false
				break
			}
			rest = rest[i+len(w):]
		}
		if ok {
			return true
		}
	}
	return false
}

// build builds the package at path into dir and returns the binary.
func build(t *testing.T, dir, path string) string {
	t.Helper()
	bin := filepath.Join(dir, filepath.Base(path))
	if out, err := exec.Command("go", "build", "-o", bin, path).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", path, err, out)
	}
	return bin
}

// TestWithCalcServe: the done-when of the fleet issue, with the binaries:
// with calc serve running, redisrpc ls lists calc with its functions, and
// redisrpc call calc add 5 prints the sum; after calc serve gets SIGTERM, a
// call fails with unavailable in under a second.
func TestWithCalcServe(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	srv := realRedis(t)
	dir := t.TempDir()
	redisrpcBin := build(t, dir, "github.com/redisrpc/redisrpc/cmd/redisrpc")
	calcBin := build(t, dir, "github.com/redisrpc/redisrpc/examples/calc")
	q := redisrpctest.Queue(t)
	env := append(os.Environ(), "REDIS_URL="+srv.URL)
	calc := exec.Command(calcBin, "serve", "-queue", q)
	calc.Env = env
	out, _ := calc.StdoutPipe()
	if err := calc.Start(); err != nil {
		t.Fatal(err)
	}
	defer calc.Process.Kill()
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || !strings.HasPrefix(line, "serving") {
		t.Fatalf("calc serve: got %q, %v", line, err)
	}
	bin := func(args ...string) (string, string, error) {
		cmd := exec.Command(redisrpcBin, args...)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	var ls string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ls, _, _ = bin("ls"); containsLine(ls, q, "1", "add clr div mul sub val") {
			break
		}
	}
	if !containsLine(ls, q, "1", "add clr div mul sub val") {
		t.Fatalf("redisrpc ls:\n%s\nwant %s with 1 server and its functions", ls, q)
	}
	if got, stderr, err := bin("call", q, "clr"); err != nil || got != "0\n" {
		t.Fatalf("redisrpc call %s clr: got %q, %v, %s", q, got, err, stderr)
	}
	if got, stderr, err := bin("call", q, "add", "5"); err != nil || got != "5\n" {
		t.Fatalf("redisrpc call %s add 5: got %q, %v, %s; want 5", q, got, err, stderr)
	}
	calc.Process.Signal(syscall.SIGTERM)
	if err := calc.Wait(); err != nil {
		t.Fatalf("calc serve after SIGTERM: %v", err)
	}
	start := time.Now()
	_, stderr, err := bin("call", q, "add", "1")
	took := time.Since(start)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.HasPrefix(stderr, "unavailable: ") || took > time.Second {
		t.Errorf("redisrpc call after SIGTERM: got %v, %q after %v; want exit 1 with unavailable in under a second", err, stderr, took)
	}
	t.Logf("after SIGTERM, redisrpc call failed with unavailable in %v: %s", took.Round(time.Millisecond), strings.SplitN(stderr, "\n", 2)[0])
}

// TestCluster: the commands work on a Redis Cluster, from any node.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("a cluster needs %s on PATH", bin)
		}
	}
	cl, err := localredis.StartCluster(3, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rc, err := cl.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	q := redisrpctest.Queue(t)
	serveShop(t, rc, q)
	time.Sleep(100 * time.Millisecond)
	for _, node := range cl.Nodes {
		url := fmt.Sprintf("redis://%s", node.Addr())
		if code, stdout, stderr := cli(t, url, "call", q, "sum", "2", "3"); code != 0 || stdout != "5\n" {
			t.Errorf("call via %s: got %d, %q, %q", url, code, stdout, stderr)
		}
		if code, stdout, stderr := cli(t, url, "ls"); code != 0 || !containsLine(stdout, q, "1") {
			t.Errorf("ls via %s: got %d, %q, %q", url, code, stdout, stderr)
		}
		if code, stdout, stderr := cli(t, url, "info", q); code != 0 || !strings.Contains(stdout, "1 live servers") {
			t.Errorf("info via %s: got %d, %q, %q", url, code, stdout, stderr)
		}
	}
}

// TestDead: redisrpc dead lists the dead letters of a queue, each with a
// REF and whether its caller was told it failed; requeues by REF the one
// listed, not one that arrived since; refuses without -force those whose
// callers were told they failed; requeues all; and purges them.
func TestDead(t *testing.T) {
	srv, rc := realRedisClient(t)
	q := redisrpctest.Queue(t)
	ctx := context.Background()
	push := func(id string, answered bool) string {
		req := fmt.Sprintf(`{"function_call":{"name":"sum","args":[1]},"response_queue":"%s:rpc:X","id":"%s"}`, q, id)
		entry, _ := json.Marshal(map[string]any{"request": req, "why": "delivered as often as allowed (WithMaxDeliveries)", "deliveries": 3,
			"at": time.Now().UnixMilli(), "server": "S1", "answered": answered})
		if err := rc.Do(ctx, rc.B().Lpush().Key(keys.Dead(q)).Element(string(entry)).Build()).Error(); err != nil {
			t.Fatal(err)
		}
		return req
	}
	queued := func() []string {
		got, _ := rc.Do(ctx, rc.B().Lrange().Key(q).Start(0).Stop(-1).Build()).AsStrSlice()
		rc.Do(ctx, rc.B().Del().Key(q).Build())
		return got
	}
	refOf := func(id string) string {
		dead, err := inspect.DeadLetters(ctx, rc, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range dead {
			if d.ID == id {
				return d.Ref
			}
		}
		t.Fatalf("no dead letter %s in %+v", id, dead)
		return ""
	}
	seen := push("seen", false)
	push("charged", true)
	seenRef, chargedRef := refOf("seen"), refOf("charged")
	code, stdout, stderr := cli(t, srv.URL, "dead", q)
	if code != 0 || !containsLine(stdout, seenRef, "3", "sum", "seen", "-", "S1") ||
		!containsLine(stdout, chargedRef, "sum", "charged", "told it failed", "S1") || !strings.Contains(stdout, "why: delivered") ||
		!strings.Contains(stdout, "-requeue refuses those without -force") {
		t.Fatalf("dead: got %d:\n%s%s", code, stdout, stderr)
	}
	push("newer", false) // arrives after the list was read: it is the newest now
	if code, stdout, stderr := cli(t, srv.URL, "dead", "-requeue", seenRef, q); code != 0 || !strings.Contains(stdout, "requeued 1 of 1") {
		t.Errorf("dead -requeue REF: got %d, %q, %q", code, stdout, stderr)
	}
	if got := queued(); len(got) != 1 || got[0] != seen {
		t.Errorf("the queue after requeueing the one listed: got %q, want %q", got, seen)
	}
	if code, _, stderr := cli(t, srv.URL, "dead", "-requeue", seenRef, q); code != 1 || !strings.Contains(stderr, "not among the dead letters") {
		t.Errorf("dead -requeue of one requeued already: got %d, %q", code, stderr)
	}
	code, stdout, stderr = cli(t, srv.URL, "dead", "-requeue", chargedRef, q)
	if code != 1 || !strings.Contains(stderr, "refused: its caller was told it failed (internal)") || !strings.Contains(stderr, "runs sum again; pass -force") ||
		!strings.Contains(stdout, "requeued 0 of 1") {
		t.Errorf("dead -requeue of an answered one: got %d, %q, %q; want a refusal", code, stdout, stderr)
	}
	if got := queued(); len(got) != 0 {
		t.Errorf("refused, yet queued: %q", got)
	}
	code, stdout, stderr = cli(t, srv.URL, "dead", "-requeue", "all", q)
	if code != 1 || !strings.Contains(stdout, "requeued 1 of 2") || !strings.Contains(stdout, "refused 1") || !strings.Contains(stderr, "charged") {
		t.Errorf("dead -requeue all: got %d, %q, %q; want the answered one refused", code, stdout, stderr)
	}
	if got := queued(); len(got) != 1 || !strings.Contains(got[0], `"id":"newer"`) {
		t.Errorf("the queue after -requeue all: got %q, want newer", got)
	}
	if code, stdout, stderr := cli(t, srv.URL, "dead", "-requeue", chargedRef, "-force", q); code != 0 || !strings.Contains(stdout, "requeued 1 of 1") {
		t.Errorf("dead -requeue -force: got %d, %q, %q", code, stdout, stderr)
	}
	if got := queued(); len(got) != 1 || !strings.Contains(got[0], `"id":"charged"`) {
		t.Errorf("the queue after -force: got %q, want charged", got)
	}
	for _, arg := range []string{"0", "9", "xyz", "ABCDEF012345"} {
		if code, _, stderr := cli(t, srv.URL, "dead", "-requeue", arg, q); code != 2 || !strings.Contains(stderr, "want all, or the REF of a dead letter") {
			t.Errorf("dead -requeue %s: got %d, %q", arg, code, stderr)
		}
	}
	push("a", false)
	push("b", false)
	if code, stdout, _ := cli(t, srv.URL, "dead", "-purge", q); code != 0 || stdout != "purged 2 dead letters of "+q+"\n" {
		t.Errorf("dead -purge: got %d, %q", code, stdout)
	}
	if code, stdout, _ := cli(t, srv.URL, "dead", q); code != 0 || !strings.Contains(stdout, "no dead letters") {
		t.Errorf("dead after the purge: got %d, %q", code, stdout)
	}
}

// TestWeb: redisrpc web serves the dashboard under loopback names and IP
// addresses, refuses other Host names with 421, and forbids framing.
func TestWeb(t *testing.T) {
	srv, rc := realRedisClient(t)
	serveShop(t, rc, redisrpctest.Queue(t))
	ctx, cancel := context.WithCancel(context.Background())
	r, w := io.Pipe()
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, []string{"web", "-url", srv.URL, "-addr", "127.0.0.1:0"}, io.Discard, w)
		w.Close()
	}()
	defer func() {
		cancel()
		if code := <-exited; code != 0 {
			t.Errorf("redisrpc web after an interrupt: exit %d, want 0", code)
		}
	}()
	line, err := bufio.NewReader(r).ReadString('\n')
	go io.Copy(io.Discard, r)
	i := strings.Index(line, "http://")
	if err != nil || i < 0 {
		t.Fatalf("redisrpc web: got %q, %v; want the address it serves", line, err)
	}
	url := strings.TrimRight(strings.Fields(line[i:])[0], ",")
	port := url[strings.LastIndexByte(url, ':')+1:]
	for host, want := range map[string]int{"127.0.0.1:" + port: 200, "localhost:" + port: 200, "attacker.example:" + port: 421} {
		req, _ := http.NewRequest("GET", url+"/api/state", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want || resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("GET /api/state with Host %s: got %d, X-Frame-Options %q; want %d, DENY", host, resp.StatusCode, resp.Header.Get("X-Frame-Options"), want)
		}
	}
}

// TestStatsWatchRates: with the default heartbeat, whose beats publish the
// counts every 3.3 s, stats -watch refreshing every 250 ms shows, under a
// steady load, the rate between the servers' beats on every screen from the
// first rate on, not 0 between beats.
func TestStatsWatchRates(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for three beats of the default heartbeat")
	}
	srv, rc := realRedisClient(t)
	q := redisrpctest.Queue(t)
	mux := redisrpc.NewMux(rc, q) // default heartbeat
	redisrpc.Handle(mux, sum, func(_ context.Context, xs []float64) (float64, error) { return 0, nil })
	redisrpctest.Serve(t, mux)
	c := redisrpc.NewClient(rc, q)
	defer c.Close()
	loadCtx, stopLoad := context.WithCancel(context.Background())
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		for loadCtx.Err() == nil {
			redisrpc.Call(loadCtx, c, sum, []float64{1})
		}
	}()
	defer func() { stopLoad(); <-loaded }()

	// Two beats give the first rate (within 6.6 s); then a beat's interval.
	ctx, cancel := context.WithTimeout(context.Background(), 11*time.Second)
	defer cancel()
	r, w := io.Pipe()
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, []string{"stats", "-url", srv.URL, "-watch", "-interval", "250ms", q}, w, w)
		w.Close()
	}()
	var out strings.Builder
	var rates []string
	first := time.Time{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "sum" {
			continue
		}
		if first.IsZero() && f[1] != "-" && f[1] != "0.0" && strings.Contains(out.String(), "CALLS/S") {
			first = time.Now()
		}
		if !first.IsZero() {
			rates = append(rates, f[1])
			if time.Since(first) > 4*time.Second {
				cancel()
			}
		}
	}
	if code := <-exited; code != 0 {
		t.Errorf("stats -watch: exit %d", code)
	}
	if first.IsZero() || len(rates) < 10 {
		t.Fatalf("stats -watch: no rate within 11 s, or too few screens after it:\n%s", out.String())
	}
	t.Logf("calls/s of sum on each screen from the first rate on: %v", rates)
	for i, rate := range rates {
		if rate == "0.0" || rate == "-" {
			t.Errorf("screen %d of %d from the first rate on: %s calls/s, want the rate between beats", i, len(rates), rate)
		}
	}
}
