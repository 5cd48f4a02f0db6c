package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/internal/localredis"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

var (
	rc    rueidis.Client
	redis *localredis.Server
)

func TestMain(m *testing.M) {
	var err error
	if redis, rc, err = localredis.StartWithClient(localredis.Any); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	rc.Close()
	redis.Close()
	os.Exit(code)
}

func newQueue(t *testing.T) string {
	return fmt.Sprintf("calctest:%s:%d", t.Name(), time.Now().UnixNano())
}

// serveCalc serves the calculator, plus what extra registers, until the test ends.
func serveCalc(t *testing.T, queue string, extra func(*redisrpc.Mux)) {
	mux := newMux(rc, queue)
	if extra != nil {
		extra(mux)
	}
	redisrpctest.Serve(t, mux)
}

func TestDemo(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), nil, &out); err != nil {
		t.Fatalf("calc: %v\n%s", err, out.String())
	}
	for _, want := range []string{"clr() = 0", "add(5) = 5", "sub(3) = 2", "mul(4) = 8", "div(2) = 4", "val() = 4", `pow(2) -> error: not_found`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestServeAndCall runs the calc serve and calc call commands against each other.
func TestServeAndCall(t *testing.T) {
	t.Setenv("REDIS_URL", redis.URL)
	if redis.Embedded {
		t.Skip("calc serve and call use plain rueidis options, which the embedded server does not take; covered by TestDemo")
	}
	serveAndCall(t, newQueue(t))
}

// serveAndCall runs calc serve on queue, then calc call against it, then
// interrupts the server, all on REDIS_URL.
func serveAndCall(t *testing.T, queue string) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- run(ctx, []string{"serve", "-queue", queue}, &bytes.Buffer{}) }()
	var out bytes.Buffer
	err := run(context.Background(), []string{"call", "-queue", queue}, &out)
	stop()
	if err != nil {
		t.Errorf("calc call: %v\n%s", err, out.String())
	}
	if err := <-served; err != nil {
		t.Errorf("calc serve: got %v, want nil after an interrupt", err)
	}
	if !strings.Contains(out.String(), "val() = 4") {
		t.Errorf("calc call output lacks val() = 4:\n%s", out.String())
	}
}

// python returns Debian's python3 when it has the redis module, or skips.
func python(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import redis").Run() == nil {
			return p
		}
	}
	t.Skip("interop tests need python3 with the redis module: apt-get install python3-redis")
	return ""
}

// TestClassicClient: the classic client calls the Go calculator.
func TestClassicClient(t *testing.T) {
	t.Parallel()
	py := python(t)
	q := newQueue(t)
	type greeting struct {
		Name  string `json:"name"`
		Times int    `json:"times"`
	}
	serveCalc(t, q, func(mux *redisrpc.Mux) {
		redisrpc.Handle(mux, redisrpc.NewEndpoint[greeting, string]("greet"), func(_ context.Context, g greeting) (string, error) {
			return strings.Repeat("hi "+g.Name+" ", g.Times), nil
		})
		redisrpc.Handle(mux, redisrpc.NewEndpoint[[]float64, float64]("sum"), func(_ context.Context, xs []float64) (float64, error) {
			s := 0.0
			for _, x := range xs {
				s += x
			}
			return s, nil
		})
	})
	calls := `[["clr",[],{}],["add",[5],{}],["sub",[3],{}],["mul",[4],{}],["div",[2],{}],["val",[],{}],
		["div",[0],{}],["pow",[2],{}],["add",["five"],{}],
		["greet",[],{"name":"Ann","times":2}],["sum",[1,2,3],{}],["sum",[[4,5]],{}],
		["clr",[],{}],["add",[],{"number":5}]]`
	out, err := exec.Command(py, "testdata/classic_client.py", redis.URL, q, calls).CombinedOutput()
	if err != nil {
		t.Fatalf("classic client: %v\n%s", err, out)
	}
	want := []string{
		`{"return_value": 0}`, `{"return_value": 5}`, `{"return_value": 2}`, `{"return_value": 8}`,
		`{"return_value": 4}`, `{"return_value": 4}`,
		`{"exception": "division by zero", "code": "invalid_argument"}`,
		`{"exception": "no function \"pow\"", "code": "not_found"}`,
		`invalid_argument`,
		`{"return_value": "hi Ann hi Ann "}`, `{"return_value": 6}`, `{"return_value": 9}`,
		`{"return_value": 0}`, `{"return_value": 5}`, // add(number=5), as the classic Python server takes it
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d responses, want %d:\n%s", len(lines), len(want), out)
	}
	for i, line := range lines {
		if strings.HasPrefix(want[i], "{") {
			if line != want[i] {
				t.Errorf("call %d: got %s, want %s", i, line, want[i])
			}
			continue
		}
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) != nil || r["code"] != want[i] || r["id"] != nil {
			t.Errorf("call %d: got %s, want an exception with code %s and no id", i, line, want[i])
		}
	}
}

// startClassicServer runs the classic calculator server until the test ends.
func startClassicServer(t *testing.T, queue string) {
	py := python(t)
	cmd := exec.Command(py, "testdata/classic_server.py", redis.URL, queue)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("classic server stderr:\n%s", stderr.String())
		}
	})
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("classic server: got %q, %v; want ready\n%s", line, err, stderr.String())
	}
}

// TestGoClientCallsClassicServer: the Go client runs the calculator sequence
// against the classic server, and fails clearly without WithClassicServer.
func TestGoClientCallsClassicServer(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	startClassicServer(t, q)

	c := redisrpc.NewClient(rc, q, redisrpc.WithClassicServer())
	defer c.Close()
	var out bytes.Buffer
	if err := sequence(context.Background(), c, true, &out); err != nil {
		t.Fatalf("sequence: %v\n%s", err, out.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := redisrpc.Call(ctx, c, Div, 0)
	var rerr *redisrpc.Error
	if !errors.As(err, &rerr) || !strings.Contains(rerr.Message, "ZeroDivisionError") {
		t.Errorf("div(0): got %v, want the classic server's ZeroDivisionError", err)
	}
	named := redisrpc.NewEndpoint[struct {
		Number float64 `json:"number"`
	}, float64]("add", redisrpc.WithNamedArgs())
	if got, err := redisrpc.Call(ctx, c, named, struct {
		Number float64 `json:"number"`
	}{1}); err != nil || got != 5 {
		t.Errorf("add(number=1): got %v, %v; want 5, nil", got, err)
	}
	spread := redisrpc.NewEndpoint[[]float64, float64]("mul", redisrpc.WithPositionalArgs())
	if got, err := redisrpc.Call(ctx, c, spread, []float64{2}); err != nil || got != 10 {
		t.Errorf("mul(2) spread: got %v, %v; want 10, nil", got, err)
	}

	plain := redisrpc.NewClient(rc, q)
	defer plain.Close()
	start := time.Now()
	if _, err := redisrpc.Call(ctx, plain, Val, struct{}{}); !errors.Is(err, redisrpc.ErrClassicServer) {
		t.Errorf("val() without WithClassicServer: got %v, want ErrClassicServer", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("val() without WithClassicServer took %v, want a prompt error", d)
	}
}

// TestCallClassicCommand runs calc call -classic against the classic server.
func TestCallClassicCommand(t *testing.T) {
	t.Setenv("REDIS_URL", redis.URL)
	if redis.Embedded {
		t.Skip("calc call uses plain rueidis options, which the embedded server does not take")
	}
	q := newQueue(t)
	startClassicServer(t, q)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"call", "-queue", q, "-classic"}, &out); err != nil {
		t.Fatalf("calc call -classic: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "val() = 4") {
		t.Errorf("output lacks val() = 4:\n%s", out.String())
	}
}

// TestServeAndCallOnCluster: calc serve and calc call work against a Redis
// Cluster given the URL of any node.
func TestServeAndCallOnCluster(t *testing.T) {
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
	for i, node := range cl.Nodes {
		t.Setenv("REDIS_URL", "redis://"+node.Addr())
		serveAndCall(t, fmt.Sprintf("calc%d", i))
	}
}
