package faults_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
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
	switch os.Getenv("FAULTS_MODE") {
	case "at-least-once":
		opts = append(opts, redisrpc.WithAtLeastOnce())
	case "dedupe":
		opts = append(opts, redisrpc.WithDedupe(0))
	}
	mux := redisrpc.NewMux(c, os.Getenv("FAULTS_QUEUE"), opts...)
	if os.Getenv("FAULTS_MODE") == "drift" {
		redisrpc.Handle(mux, serverPlaceOrder, placeOrder)
	}
	redisrpc.HandleStream(mux, Ticks, ticks)
	redisrpc.Handle(mux, Slow, func(ctx context.Context, ms int) (int, error) {
		if ms < 0 { // a poison request: it kills the server
			os.Exit(3)
		}
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
	for _, mode := range []string{"at-least-once", "dedupe", "at-most-once"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			killMidCall(t, mode)
		})
	}
}

func killMidCall(t *testing.T, mode string) {
	q := newQueue(t)
	child := startServer(t, q, mode).cmd

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
	if mode != "at-most-once" {
		processing = waitForProcessing(t, ctx, q)
	}
	if n, err := rc.Do(ctx, rc.B().Llen().Key(q).Build()).AsInt64(); err != nil || n != 0 {
		t.Fatalf("queue before the kill: got %d, %v; want the request taken", n, err)
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	opts := []redisrpc.MuxOption{redisrpc.WithHeartbeat(time.Second)}
	switch mode {
	case "at-least-once":
		opts = append(opts, redisrpc.WithAtLeastOnce())
	case "dedupe": // the one case it leaves: the request runs again, on the live server
		opts = append(opts, redisrpc.WithDedupe(0))
	}
	serve(t, rc, q, opts...)
	err := <-done
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
// with args, which the test may kill (and restart on the same port); it is
// killed when the test ends, and the test skips where there is no
// redis-server.
func ownRedis(t *testing.T, port int, args ...string) (int, func()) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("needs redis-server on PATH to kill and restart")
	}
	n, err := localredis.StartNode(t.TempDir(), port, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Kill)
	return n.Port, n.Kill
}

// TestRedisKilledUnderLoad: with Redis killed (SIGKILL) for 2 s and
// restarted under the load of 32 callers, every call returns within its
// deadline, calls succeed again soon after Redis is back with no restart of
// client or server, and the outage fills no log: client and server log it
// in a few lines.
func TestRedisKilledUnderLoad(t *testing.T) {
	t.Parallel()
	port, kill := ownRedis(t, 0)
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{fmt.Sprintf("127.0.0.1:%d", port)}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := newQueue(t)
	h := &countingHandler{Handler: slog.NewTextHandler(io.Discard, nil)}
	serve(t, c, q, redisrpc.WithLogger(slog.New(h)))
	client := redisrpc.NewClient(c, q, redisrpc.WithLogger(slog.New(h)))
	defer client.Close()
	var back time.Time
	recovered := underLoad(t, client, 32, func() {
		kill()
		time.Sleep(2 * time.Second)
		_, kill = ownRedis(t, port)
		back = time.Now()
	})
	kill()
	after := recovered.Sub(back)
	t.Logf("log lines of client and server for the outage: %d; 100 calls succeeded %v after Redis was back", h.lines.Load(), after.Round(time.Millisecond))
	if n := h.lines.Load(); n >= 50 {
		t.Errorf("log lines for a 2 s outage: got %d, want under 50", n)
	}
	if after > time.Second {
		t.Errorf("100 calls succeeded %v after Redis was back, want within 1s", after)
	}
}

// underLoad runs callers callers with 1s deadlines, causes fault after a
// second, and checks that no call outlived its deadline and that at least
// 100 calls succeeded within 20s after the fault. It returns when the 100th
// call after the fault succeeded.
func underLoad(t *testing.T, client *redisrpc.Client, callers int, fault func()) time.Time {
	t.Helper()
	const deadline = time.Second
	var (
		late, ok, failed atomic.Int64
		okAfter          atomic.Int64 // successes after the fault
		after            atomic.Bool
		stop             atomic.Bool
		wg               sync.WaitGroup
		mu               sync.Mutex
		hundredth        time.Time
	)
	for range callers {
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
				if after.Load() && okAfter.Add(1) == 100 {
					mu.Lock()
					hundredth = time.Now()
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(time.Second)
	faulted := time.Now()
	fault()
	after.Store(true)
	for end := time.Now().Add(20 * time.Second); okAfter.Load() < 100 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("calls: %d ok, %d failed, %d ok after the fault (the 100th %v after it began), %d late",
		ok.Load(), failed.Load(), okAfter.Load(), hundredth.Sub(faulted).Round(10*time.Millisecond), late.Load())
	if late.Load() != 0 {
		t.Errorf("calls returning after their deadline: got %d, want 0", late.Load())
	}
	if okAfter.Load() < 100 {
		t.Errorf("successful calls within 20s of the fault: got %d, want at least 100", okAfter.Load())
	}
	return hundredth
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
	errors atomic.Int64 // records at level Error
	lines  atomic.Int64 // records at level Info and above
}

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelInfo {
		h.lines.Add(1)
	}
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
	// Not parallel: the CPU time measured is this test's alone, the parallel
	// tests waiting meanwhile.
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
	mux := redisrpc.NewMux(gone, newQueue(t), redisrpc.WithLogger(slog.New(h)), redisrpc.WithHeartbeat(300*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	before := cpuTime()
	if err := mux.Serve(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Serve: got %v, want context.DeadlineExceeded", err)
	}
	used := cpuTime() - before
	t.Logf("3 s of Serve with Redis gone: %v of CPU, %d lines logged at level Error", used.Round(time.Millisecond), h.errors.Load())
	// Spinning, two pop loops would take most of a core.
	if used > 500*time.Millisecond {
		t.Errorf("CPU time in 3s: got %v, want little (back-off, not spinning)", used)
	}
	// One line when taking requests starts failing, one when beats do.
	if n := h.errors.Load(); n == 0 || n > 4 {
		t.Errorf("lines logged in 3s: got %d, want 1 to 4", n)
	}
}

// cpuTime returns the CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
	child := startServer(t, q, "at-most-once").cmd
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

// process is a server process started by startServer.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has exited
	err    error         // what Wait returned; read after exited is closed
}

// startServer starts a server process of Slow on q, as serverProcess does,
// and waits until it is ready; the test's cleanup kills it. One goroutine
// waits for the process, so the test and its cleanup never call Wait
// concurrently.
func startServer(t *testing.T, q, mode string) *process {
	t.Helper()
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
	p := &process{cmd: child, exited: make(chan struct{})}
	t.Cleanup(func() { child.Process.Kill(); <-p.exited })
	line, err := readLine(out) // before Wait, which closes out
	go func() { p.err = child.Wait(); close(p.exited) }()
	if err != nil || line != "ready" {
		t.Fatalf("server process: got %q, %v; want ready", line, err)
	}
	return p
}

// TestPoisonRequest: a request whose handler kills its server is delivered
// WithMaxDeliveries times (3 by default), to a new server each time, then
// goes to the dead letters; its caller gets CodeInternal; the last server
// lives on, and redisrpc's inspect lists, requeues and purges it.
func TestPoisonRequest(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { _, err := redisrpc.Call(ctx, c, Slow, -1); done <- err }()
	killed := 0
	var err error
	for waiting := true; waiting; {
		server := startServer(t, q, "at-least-once")
		select {
		case <-server.exited:
			var exit *exec.ExitError
			if !errors.As(server.err, &exit) || exit.ExitCode() != 3 {
				t.Fatalf("a server: %v, want the poison's exit code 3", server.err)
			}
			killed++
		case err = <-done:
			waiting = false
		case <-ctx.Done():
			t.Fatalf("the poison request is still delivered after %d servers died", killed)
		}
	}
	t.Logf("after %d servers died, %v after the call, its caller got: %v", killed, time.Since(start).Round(time.Millisecond), err)
	if killed != 3 || redisrpc.CodeOf(err) != redisrpc.CodeInternal || !strings.Contains(err.Error(), "dead letters") {
		t.Fatalf("got %d servers killed and %v; want 3 and an internal error naming the dead letters", killed, err)
	}
	dead, err := inspect.DeadLetters(ctx, rc, q)
	if err != nil || len(dead) != 1 || dead[0].Deliveries != 3 || dead[0].Function != "slow" || !strings.Contains(dead[0].Why, "WithMaxDeliveries") {
		t.Fatalf("dead letters: got %+v, %v; want the poison request, 3 deliveries", dead, err)
	}
	// Its caller was told it failed: requeuing it must be explicit. Requeued,
	// it is delivered again (and kills the last server).
	if !dead[0].Answered {
		t.Error("the dead letter: got Answered false, want true: its caller got CodeInternal")
	}
	if err := inspect.Requeue(ctx, rc, dead[0]); !errors.Is(err, inspect.ErrAnswered) {
		t.Fatalf("Requeue without WithAnswered: got %v, want ErrAnswered", err)
	}
	if err := inspect.Requeue(ctx, rc, dead[0], inspect.WithAnswered()); err != nil {
		t.Fatal(err)
	}
	if dead, _ := inspect.DeadLetters(ctx, rc, q); len(dead) != 0 {
		t.Errorf("dead letters after requeue: %d, want 0", len(dead))
	}
	if n := llen(t, q); n != 0 { // the live server took it at once
		for ; n != 0 && ctx.Err() == nil; n = llen(t, q) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if n, err := inspect.Purge(ctx, rc, q); err != nil || n != 0 {
		t.Errorf("Purge: got %d, %v; want 0 (none dead yet)", n, err)
	}
}
