package faults_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

var (
	rc    rueidis.Client
	redis *localredis.Server
	quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
)

// Slow takes as long as its argument says, in milliseconds.
var Slow = redisrpc.NewEndpoint[int, int]("slow")

func TestMain(m *testing.M) {
	if os.Getenv("FAULTS_ROLE") == "server" {
		serverProcess()
		return
	}
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

// serverProcess serves Slow in at-least-once mode until killed, as a child
// process of the tests.
func serverProcess() {
	srv := &localredis.Server{URL: os.Getenv("FAULTS_REDIS"), Embedded: os.Getenv("FAULTS_EMBEDDED") == "1"}
	c, err := srv.Client()
	if err != nil {
		fmt.Fprintln(os.Stderr, "server process:", err)
		os.Exit(1)
	}
	opts := []redisrpc.MuxOption{redisrpc.WithHeartbeat(time.Second)}
	if os.Getenv("FAULTS_MODE") == "at-least-once" {
		opts = append(opts, redisrpc.WithAtLeastOnce())
	}
	mux := redisrpc.NewMux(c, os.Getenv("FAULTS_QUEUE"), opts...)
	redisrpc.Handle(mux, Slow, func(ctx context.Context, ms int) (int, error) {
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return ms, nil
	})
	fmt.Println("ready")
	mux.Serve(context.Background())
}

func newQueue(t *testing.T) string {
	return fmt.Sprintf("faults:%s:%d", t.Name(), time.Now().UnixNano())
}

func serve(t *testing.T, c rueidis.Client, queue string, opts ...redisrpc.MuxOption) *redisrpc.Mux {
	t.Helper()
	mux := redisrpc.NewMux(c, queue, append([]redisrpc.MuxOption{redisrpc.WithLogger(quiet)}, opts...)...)
	redisrpc.Handle(mux, Slow, func(ctx context.Context, ms int) (int, error) {
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
			return ms, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	})
	redisrpctest.Serve(t, mux)
	return mux
}

// TestServerKilledMidCall kills (SIGKILL) the server process running a call.
// In at-least-once mode the call completes through another server before its
// deadline; at most once, it is lost and the caller gets its deadline error.
func TestServerKilledMidCall(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"at-least-once", "at-most-once"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			killMidCall(t, mode)
		})
	}
}

func killMidCall(t *testing.T, mode string) {
	q := newQueue(t)
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "FAULTS_ROLE=server", "FAULTS_MODE="+mode, "FAULTS_REDIS="+redis.URL, "FAULTS_QUEUE="+q,
		"FAULTS_EMBEDDED="+map[bool]string{true: "1", false: "0"}[redis.Embedded])
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Wait()
	defer child.Process.Kill()
	if line, err := readLine(out); err != nil || line != "ready" {
		t.Fatalf("server process: got %q, %v; want ready", line, err)
	}

	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		got, err := redisrpc.Call(ctx, c, Slow, 3000) // the child takes it and sleeps
		if err == nil && got != 3000 {
			err = fmt.Errorf("got %d, want 3000", got)
		}
		done <- err
	}()
	// Kill the child once it holds the request: the queue is empty and the
	// child's processing list (at least once) holds it.
	time.Sleep(200 * time.Millisecond)
	processing := ""
	if mode == "at-least-once" {
		processing = waitForProcessing(t, ctx, q)
	}
	if n, err := rc.Do(ctx, rc.B().Llen().Key(q).Build()).AsInt64(); err != nil || n != 0 {
		t.Fatalf("queue before the kill: got %d, %v; want the request taken", n, err)
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	opts := []redisrpc.MuxOption{redisrpc.WithHeartbeat(time.Second)}
	if mode == "at-least-once" {
		opts = append(opts, redisrpc.WithAtLeastOnce())
	}
	serve(t, rc, q, opts...)
	err = <-done
	took := time.Since(start).Round(time.Millisecond)
	if mode == "at-most-once" {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("the call whose server died: got %v, want context.DeadlineExceeded (lost)", err)
		}
		t.Logf("lost, as at most once allows: the caller got %v after %v", err, took)
		return
	}
	if err != nil {
		t.Fatalf("the call after its server died: %v", err)
	}
	t.Logf("completed through the second server after %v", took)
	if n, err := rc.Do(ctx, rc.B().Exists().Key(processing).Build()).AsInt64(); err != nil || n != 0 {
		t.Errorf("the dead server's processing list: got exists=%d, %v; want gone", n, err)
	}
}

// waitForProcessing returns the processing list that holds a request of q.
func waitForProcessing(t *testing.T, ctx context.Context, q string) string {
	t.Helper()
	for ctx.Err() == nil {
		ids, _ := rc.Do(ctx, rc.B().Zrange().Key(keys.Leases(q)).Min("0").Max("-1").Build()).AsStrSlice()
		for _, id := range ids {
			key := keys.Processing(q, id)
			if n, _ := rc.Do(ctx, rc.B().Llen().Key(key).Build()).AsInt64(); n > 0 {
				return key
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no server took the request")
	return ""
}

// readLine reads the first line a child process prints.
func readLine(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	return strings.TrimSuffix(line, "\n"), err
}

// ownRedis starts a redis-server of the test's own on port (0: a free one),
// which the test may kill; it skips where there is no redis-server.
func ownRedis(t *testing.T, port int, args ...string) (int, func()) {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("needs redis-server on PATH to kill and restart")
	}
	if port == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	cmd := exec.Command(path, append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}, args...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	kill := func() { cmd.Process.Kill(); cmd.Wait() }
	for range 100 {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return port, kill
		}
		time.Sleep(20 * time.Millisecond)
	}
	kill()
	t.Fatal("redis-server did not start")
	return 0, nil
}

// TestRedisKilledUnderLoad: with Redis killed (SIGKILL) and restarted under
// load, every call returns within its deadline, and calls succeed again once
// Redis is back, with no restart of client or server.
func TestRedisKilledUnderLoad(t *testing.T) {
	t.Parallel()
	port, kill := ownRedis(t, 0)
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{fmt.Sprintf("127.0.0.1:%d", port)}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := newQueue(t)
	serve(t, c, q)
	client := redisrpc.NewClient(c, q, redisrpc.WithLogger(quiet))
	defer client.Close()
	underLoad(t, client, func() {
		kill()
		time.Sleep(1500 * time.Millisecond)
		_, kill = ownRedis(t, port)
	})
	kill()
}

// underLoad runs 16 callers with 1s deadlines, causes fault after a second,
// and checks that no call outlived its deadline and that at least 100 calls
// succeeded within 15s after the fault.
func underLoad(t *testing.T, client *redisrpc.Client, fault func()) {
	t.Helper()
	const deadline = time.Second
	var (
		late, ok, failed atomic.Int64
		okAfter          atomic.Int64 // successes after the fault
		after            atomic.Bool
		stop             atomic.Bool
		wg               sync.WaitGroup
	)
	for range 16 {
		wg.Go(func() {
			for !stop.Load() {
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				start := time.Now()
				_, err := redisrpc.Call(ctx, client, Slow, 1)
				took := time.Since(start)
				cancel()
				if took > deadline+300*time.Millisecond {
					late.Add(1)
				}
				if err != nil {
					failed.Add(1)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				ok.Add(1)
				if after.Load() {
					okAfter.Add(1)
				}
			}
		})
	}
	time.Sleep(time.Second)
	faulted := time.Now()
	fault()
	after.Store(true)
	for i := 0; i < 150 && okAfter.Load() < 100; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	recovered := time.Since(faulted)
	stop.Store(true)
	wg.Wait()
	t.Logf("calls: %d ok, %d failed, %d ok after the fault (100 reached %v after it began), %d late",
		ok.Load(), failed.Load(), okAfter.Load(), recovered.Round(10*time.Millisecond), late.Load())
	if late.Load() != 0 {
		t.Errorf("calls returning after their deadline: got %d, want 0", late.Load())
	}
	if okAfter.Load() < 100 {
		t.Errorf("successful calls within 15s of the fault: got %d, want at least 100", okAfter.Load())
	}
}

// TestVanishedClientKeysExpire: whatever a client caused to exist has a TTL,
// even when it gave up on its calls or disappeared; nothing else stays.
func TestVanishedClientKeysExpire(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	ctx := context.Background()
	func() {
		mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithAtLeastOnce(), redisrpc.WithHeartbeat(time.Second))
		redisrpc.Handle(mux, Slow, func(_ context.Context, ms int) (int, error) {
			time.Sleep(time.Duration(ms) * time.Millisecond)
			return ms, nil
		})
		served := make(chan error, 1)
		go func() { served <- mux.Serve(ctx) }()
		defer func() { // the server stops cleanly: its own keys go
			mux.Shutdown(ctx)
			<-served
		}()
		shared := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
		classic := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithClassicServer())
		for _, c := range []*redisrpc.Client{shared, classic} {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if _, err := redisrpc.Call(cctx, c, Slow, 1); err != nil {
				t.Fatal(err)
			}
			cancel()
			// Give up before the answer: the response lands with nobody to read it.
			cctx, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
			redisrpc.Call(cctx, c, Slow, 300)
			cancel()
		}
		time.Sleep(500 * time.Millisecond) // the late responses arrive
		// The clients vanish without Close.
	}()
	keys := scan(t, q)
	if len(keys) == 0 {
		t.Fatal("no keys found: the test looks in the wrong place")
	}
	for _, k := range keys {
		ttl, err := rc.Do(ctx, rc.B().Pttl().Key(k).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		if ttl < 0 && ttl != -2 { // -2: gone meanwhile
			t.Errorf("key %s has no TTL (%d)", k, ttl)
		}
	}
	t.Logf("%d keys left, each with a TTL: %v", len(keys), keys)
}

func scan(t *testing.T, q string) []string {
	t.Helper()
	var keys []string
	for _, pattern := range []string{q + "*", "{" + q + "}*"} {
		var cursor uint64
		for {
			e, err := rc.Do(context.Background(), rc.B().Scan().Cursor(cursor).Match(pattern).Count(1000).Build()).AsScanEntry()
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, e.Elements...)
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
	return keys
}

// countingHandler counts error records.
type countingHandler struct {
	slog.Handler
	errors atomic.Int64
}

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		h.errors.Add(1)
		if testing.Verbose() {
			r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(os.Stderr, "%s %s=%v\n", r.Message, a.Key, a.Value); return true })
		}
	}
	return nil
}

// TestRedisUnreachableNoSpin: with Redis gone, Serve retries with back-off
// instead of spinning, and returns when its context ends.
func TestRedisUnreachableNoSpin(t *testing.T) {
	t.Parallel()
	srv, err := localredis.StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	opt, _ := srv.Options()
	gone, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	defer gone.Close()
	srv.Close()
	h := &countingHandler{Handler: slog.NewTextHandler(io.Discard, nil)}
	mux := redisrpc.NewMux(gone, newQueue(t), redisrpc.WithLogger(slog.New(h)))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := mux.Serve(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Serve: got %v, want context.DeadlineExceeded", err)
	}
	// Two pops, back-off from 50ms doubling to 2s: about 6 failures each in 3s.
	if n := h.errors.Load(); n == 0 || n > 20 {
		t.Errorf("failed attempts in 3s: got %d, want 1 to 20", n)
	}
}

// TestACLUser: the ACL user README.md documents, created with its command as
// written and connected to with plain rueidis options, can serve and call in
// both delivery modes, with and without shards, and from a classic client; a
// wrong password is refused when the client is made.
func TestACLUser(t *testing.T) {
	t.Parallel()
	port, kill := ownRedis(t, 0)
	defer kill()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	admin, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	acl := readmeACL(t)
	if err := admin.Do(context.Background(), admin.B().Arbitrary(acl[0]).Args(acl[1:]...).Build()).Error(); err != nil {
		t.Fatalf("%s: %v", strings.Join(acl, " "), err)
	}
	opt := rueidis.ClientOption{InitAddress: []string{addr}, Username: "calc", Password: "wrong"}
	if _, err := rueidis.NewClient(opt); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("a wrong password: got %v, want WRONGPASS", err)
	}
	opt.Password = "secret" // as README.md writes it
	c, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, mode := range []struct {
		shards      int
		atLeastOnce bool
	}{{1, false}, {1, true}, {3, false}, {3, true}} {
		h := &countingHandler{Handler: slog.NewTextHandler(io.Discard, nil)}
		opts := []redisrpc.MuxOption{redisrpc.WithShards(mode.shards), redisrpc.WithLogger(slog.New(h)), redisrpc.WithHeartbeat(300 * time.Millisecond)}
		if mode.atLeastOnce {
			opts = append(opts, redisrpc.WithAtLeastOnce())
		}
		mux := redisrpc.NewMux(c, "calc", opts...)
		redisrpc.Handle(mux, Slow, func(_ context.Context, ms int) (int, error) { return ms, nil })
		served := make(chan error, 1)
		go func() { served <- mux.Serve(context.Background()) }()
		for _, copts := range [][]redisrpc.ClientOption{{redisrpc.WithShards(mode.shards)}, {redisrpc.WithClassicServer()}} {
			client := redisrpc.NewClient(c, "calc", append(copts, redisrpc.WithLogger(slog.New(h)))...)
			for i := range 3 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if got, err := redisrpc.Call(ctx, client, Slow, i); err != nil || got != i {
					t.Errorf("call as the ACL user, server %+v: got %d, %v; want %d, nil", mode, got, err, i)
				}
				cancel()
			}
			client.Close()
		}
		time.Sleep(250 * time.Millisecond) // a few beats: leases, rescues
		mux.Shutdown(context.Background())
		<-served
		if n := h.errors.Load(); n != 0 {
			t.Errorf("errors logged under the ACL user, server %+v: got %d, want 0", mode, n)
		}
	}
	// Keys outside the service are refused.
	if err := c.Do(context.Background(), c.B().Set().Key("other").Value("x").Build()).Error(); err == nil {
		t.Error("SET other as the ACL user: got no error, want NOPERM")
	}
}

// readmeACL returns the ACL SETUSER command README.md documents, as words.
func readmeACL(t *testing.T) []string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(readme), "ACL SETUSER")
	if !ok {
		t.Fatal("README.md has no ACL SETUSER command")
	}
	block, _, _ = strings.Cut(block, "```")
	return append([]string{"ACL", "SETUSER"}, strings.Fields(block)...)
}

// TestDeadServerLeavesRegistry: a server killed (SIGKILL) leaves the
// registry's live servers by itself within its heartbeat (1 s here).
func TestDeadServerLeavesRegistry(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "FAULTS_ROLE=server", "FAULTS_MODE=at-most-once", "FAULTS_REDIS="+redis.URL, "FAULTS_QUEUE="+q,
		"FAULTS_EMBEDDED="+map[bool]string{true: "1", false: "0"}[redis.Embedded])
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Wait()
	defer child.Process.Kill()
	if line, err := readLine(out); err != nil || line != "ready" {
		t.Fatalf("server process: got %q, %v; want ready", line, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	live := func() int {
		got, err := inspect.Inspect(ctx, rc, q)
		if err != nil {
			t.Fatal(err)
		}
		return len(got.Servers)
	}
	for live() != 1 {
		time.Sleep(10 * time.Millisecond)
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	for live() != 0 {
		if time.Since(killed) > 3*time.Second {
			t.Fatal("the killed server is still live in the registry 3 s after")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("the killed server left the registry %v after the kill (1 s heartbeat)", time.Since(killed).Round(time.Millisecond))
}
