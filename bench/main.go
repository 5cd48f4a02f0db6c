// Command bench compares redisrpc with NATS request-reply on one machine: the
// broker, the server and the client each run in a process of their own, the
// systems alternate within each round, and the table shows medians over rounds.
//
//	cd bench && go run . [-rounds 5] [-duration 5s] [-callers 1,16,256] [-sizes 64,1024,65536]
//
// -baseline names harness binaries built from other commits, separated by
// commas; each then runs every system of -systems but nats too, as
// "<binary>:<system>", in the same rounds, alternating with the others,
// which is how changes are compared on a noisy machine.
//
// It needs redis-server on PATH; NATS runs embedded in a child process. With
// -cluster N, Redis is a cluster of N masters (redis-cli on PATH too). The
// systems: "redisrpc" (shared response list, batched pops), "at-least-once"
// (the same with WithAtLeastOnce), "dedupe" (the same with WithDedupe, and
// WithRetries(5) on the client), "redisrpc-raw" and "nats-raw"
// (json.RawMessage endpoints, and a NATS responder that sends the bytes
// back: transport apart from codec), "redisrpc-goccy" (the same with
// WithCodec of github.com/goccy/go-json), "redisrpc-sharded"
// (the same with WithShards(-shards)), "blocking-pop"
// (redisrpc's WithClassicServer mode: one response list and one BLPOP per call,
// the classic design), "nats" (nats.go Request against a queue subscriber),
// "psrpc" (github.com/livekit/psrpc over its Redis bus, protobuf BytesValue
// messages of -sizes bytes, a method routed as a queue), "stream" and
// "nats-stream" (streams of 1000 items of 64 bytes: redisrpc's CallStream,
// and a NATS request answered by that many messages to its inbox; a call
// reads one item, so calls/s is items/s and CPU is per item; -callers is
// the streams at once) and "jetstream" (NATS
// JetStream as the at-least-once anchor: each request published into a
// work-queue stream on file storage, in a broker of its own, and taken by a
// pull consumer that replies to the inbox the request names, then acks).
// Every server decodes and re-encodes the request, a JSON struct of about
// each of -sizes bytes, as a typed handler would. The table gives, for each
// payload size and caller count, the medians over rounds, the ratio to NATS
// paired round by round, and the CPU time per call of each process.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gojson "github.com/goccy/go-json"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/internal/localredis"
)

type payload struct {
	ID   int    `json:"id"`
	Data string `json:"data"`
}

var echo = redisrpc.NewEndpoint[payload, payload]("echo")

// stream answers n with n items like echo's response (the systems
// "stream" and "nats-stream"): each call of those systems reads one item,
// of a stream of streamItems, and opens the next stream after the last, so
// that calls/s is items/s and CPU per call is CPU per item.
var stream = redisrpc.NewStream[int, payload]("stream")

const streamItems = 1000

// echoRaw is echo without JSON of its own: the request's bytes travel as
// they are, as json.RawMessage, for the transport alone.
var echoRaw = redisrpc.NewEndpoint[json.RawMessage, json.RawMessage]("echo")

const queue = "bench"

func main() {
	if len(os.Args) > 1 {
		var err error
		switch os.Args[1] {
		case "broker":
			err = broker(os.Args[2])
		case "serve":
			err = serve(os.Args[2], os.Args[3])
		case "client":
			err = client(os.Args[2:])
		default:
			err = drive(os.Args[1:])
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if err := drive(nil); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// result is what a client process prints, and the CPU time per call that
// the driver adds for each process: client, server and broker.
type result struct {
	Calls    int     `json:"calls"`
	Secs     float64 `json:"secs"`
	P50us    float64 `json:"p50_us"`
	P99us    float64 `json:"p99_us"`
	Errors   int     `json:"errors"`
	AllCalls int     `json:"all_calls"` // warm-up included
	ClientUs float64 `json:"client_cpu_us"`

	ServerUs, BrokerUs float64 // 0 where unknown
}

// cpuUs returns the CPU time per call of every process, 0 where unknown.
func (r result) cpuUs() float64 {
	if r.ServerUs == 0 || r.BrokerUs == 0 {
		return 0
	}
	return r.ClientUs + r.ServerUs + r.BrokerUs
}

func (r result) rate() float64 { return float64(r.Calls) / r.Secs }

func drive(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	rounds := fs.Int("rounds", 5, "rounds; each runs every system once per caller count")
	duration := fs.Duration("duration", 5*time.Second, "measured time per run, after 1s of warm-up")
	callersFlag := fs.String("callers", "1,16,256", "concurrent callers")
	sizesFlag := fs.String("sizes", "64", "approximate JSON sizes of a request, in bytes")
	systemsFlag := fs.String("systems", "nats,redisrpc,at-least-once,blocking-pop", "systems to compare")
	profile := fs.String("profile", "", "write CPU profiles of the server and client processes to this directory")
	cluster := fs.Int("cluster", 0, "run Redis as a cluster of this many masters (redis-server and redis-cli on PATH)")
	shards := fs.Int("shards", 3, "shards of the redisrpc-sharded system")
	baseline := fs.String("baseline", "", "harness binaries built from other commits, comma-separated: each runs the systems too, as <binary>:<system>, in the same rounds")
	if err := fs.Parse(args); err != nil {
		return err
	}
	os.Setenv("BENCH_SHARDS", strconv.Itoa(*shards))
	if *profile != "" {
		os.Setenv("BENCH_PROFILE", *profile) // the children read it
	}
	callers, err := ints("-callers", *callersFlag)
	if err != nil {
		return err
	}
	sizes, err := ints("-sizes", *sizesFlag)
	if err != nil {
		return err
	}
	systems := strings.Split(*systemsFlag, ",")
	self, err := os.Executable()
	if err != nil {
		return err
	}
	type run struct{ bin, as string } // the harness binary and the system it runs
	as := map[string]run{}
	for _, sys := range systems {
		as[sys] = run{self, sys}
	}
	for _, b := range strings.FieldsFunc(*baseline, func(r rune) bool { return r == ',' }) {
		for _, sys := range slices.Clone(systems) {
			if strings.HasPrefix(sys, "nats") || sys == "jetstream" || sys == "psrpc" || as[sys].bin != self {
				continue
			}
			name := filepath.Base(b) + ":" + sys
			systems = append(systems, name)
			as[name] = run{b, sys}
		}
	}

	natsAddr, natsPid, stopNATS, err := start(self, "broker", "nats")
	if err != nil {
		return err
	}
	defer stopNATS()
	var redisAddr string
	redisPid := 0 // unknown: a cluster, or REDIS_URL
	if *cluster > 0 {
		cl, err := localredis.StartCluster(*cluster, 0)
		if err != nil {
			return err
		}
		defer cl.Close()
		redisAddr = cl.URL()
		os.Setenv("BENCH_CLUSTER", "1")
	} else {
		var stopRedis func()
		if redisAddr, redisPid, stopRedis, err = startRedis(); err != nil {
			return err
		}
		defer stopRedis()
	}
	addr := map[string]string{"nats": natsAddr}
	brokerPid := map[string]int{"nats": natsPid}
	for _, sys := range systems {
		switch {
		case as[sys].as == "jetstream":
			if _, ok := addr["jetstream"]; !ok { // a broker of its own
				jsAddr, jsPid, stopJS, err := start(self, "broker", "jetstream")
				if err != nil {
					return err
				}
				defer stopJS()
				addr["jetstream"], brokerPid["jetstream"] = jsAddr, jsPid
			}
			addr[sys], brokerPid[sys] = addr["jetstream"], brokerPid["jetstream"]
		case strings.HasPrefix(as[sys].as, "nats"):
			addr[sys], brokerPid[sys] = natsAddr, natsPid
		default:
			addr[sys], brokerPid[sys] = redisAddr, redisPid
		}
	}

	runs := map[string][]result{} // system/size/callers -> results, by round
	key := func(sys string, size, n int) string { return fmt.Sprintf("%s/%d/%d", sys, size, n) }
	for round := range *rounds {
		for _, size := range sizes {
			for _, n := range callers {
				order := slices.Clone(systems)
				if round%2 == 1 {
					slices.Reverse(order)
				}
				for _, sys := range order {
					r, err := runOnce(as[sys].bin, as[sys].as, addr[sys], brokerPid[sys], n, size, *duration)
					if err != nil {
						return fmt.Errorf("%s with %d callers: %w", sys, n, err)
					}
					runs[key(sys, size, n)] = append(runs[key(sys, size, n)], r)
					fmt.Fprintf(os.Stderr, "round %d  %-12s size=%-6d callers=%-4d %9.0f calls/s  p50 %6.0f us  p99 %7.0f us  errors %d\n",
						round+1, sys, size, n, r.rate(), r.P50us, r.P99us, r.Errors)
				}
			}
		}
	}
	where := "one Redis"
	if *cluster > 0 {
		where = fmt.Sprintf("a cluster of %d masters, redisrpc-sharded with %d shards", *cluster, *shards)
	}
	fmt.Printf("\n%d rounds of %v per run, GOMAXPROCS %d, %s, %s\n\n", *rounds, *duration, runtime.GOMAXPROCS(0), where, time.Now().Format("2006-01-02"))
	fmt.Println("vs nats: the ratio of the median calls/s; paired: the median and the range over rounds of the ratio to nats in the same round.")
	fmt.Println()
	fmt.Println("| payload | callers | system | calls/s | vs nats | paired (range) | p50 us | p99 us | CPU us/call: client + server + broker |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, size := range sizes {
		for _, n := range callers {
			nats := runs[key("nats", size, n)]
			base := median(nats, result.rate)
			for _, sys := range systems {
				rs := runs[key(sys, size, n)]
				rate := median(rs, result.rate)
				ratio, paired := "-", "-"
				if base > 0 {
					ratio = fmt.Sprintf("%.2fx", rate/base)
					paired = pairedRatio(rs, nats)
				}
				cpu := "-"
				if total := median(rs, result.cpuUs); total > 0 {
					cpu = fmt.Sprintf("%.1f + %.1f + %.1f = %.1f", median(rs, func(r result) float64 { return r.ClientUs }),
						median(rs, func(r result) float64 { return r.ServerUs }), median(rs, func(r result) float64 { return r.BrokerUs }), total)
				}
				fmt.Printf("| %s | %d | %s | %.0f | %s | %s | %.0f | %.0f | %s |\n", sizeName(size), n, sys, rate, ratio, paired,
					median(rs, func(r result) float64 { return r.P50us }), median(rs, func(r result) float64 { return r.P99us }), cpu)
			}
		}
	}
	return nil
}

// pairedRatio returns the median and range of the ratios of rs's calls/s to
// base's in the same rounds.
func pairedRatio(rs, base []result) string {
	var v []float64
	for i := range min(len(rs), len(base)) {
		if b := base[i].rate(); b > 0 {
			v = append(v, rs[i].rate()/b)
		}
	}
	if len(v) == 0 {
		return "-"
	}
	slices.Sort(v)
	return fmt.Sprintf("%.2fx (%.2f-%.2f)", v[len(v)/2], v[0], v[len(v)-1])
}

// sizeName writes a payload size as 64 B, 1 KiB or 64 KiB.
func sizeName(n int) string {
	switch {
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// ints parses a comma-separated list of numbers given to flag.
func ints(flag, list string) ([]int, error) {
	var ns []int
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s: %q is not a positive number", flag, s)
		}
		ns = append(ns, n)
	}
	return ns, nil
}

func median(rs []result, f func(result) float64) float64 {
	if len(rs) == 0 {
		return 0
	}
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// runOnce starts a server process for sys, runs a client process against it and
// stops the server. It charges the CPU time the server and the broker (brokerPid,
// 0 if unknown) spend while the client runs to the client's calls.
func runOnce(self, sys, addr string, brokerPid, callers, size int, d time.Duration) (result, error) {
	var r result
	srv := exec.Command(self, "serve", sys, addr)
	srv.Stderr = os.Stderr
	out, err := srv.StdoutPipe()
	if err != nil {
		return r, err
	}
	if err := srv.Start(); err != nil {
		return r, err
	}
	defer func() {
		srv.Process.Signal(syscall.SIGTERM)
		srv.Wait()
	}()
	if _, err := readLine(out); err != nil {
		return r, fmt.Errorf("server did not start: %w", err)
	}
	cl := exec.Command(self, "client", sys, addr, strconv.Itoa(callers), strconv.Itoa(size), d.String())
	cl.Stderr = os.Stderr
	server0, broker0 := cpuTime(srv.Process.Pid), cpuTime(brokerPid)
	b, err := cl.Output()
	if err != nil {
		return r, fmt.Errorf("client: %w", err)
	}
	server1, broker1 := cpuTime(srv.Process.Pid), cpuTime(brokerPid)
	if err := json.Unmarshal(b, &r); err != nil || r.AllCalls == 0 {
		return r, err
	}
	perCall := func(t0, t1 time.Duration) float64 {
		if t0 < 0 || t1 < 0 {
			return 0
		}
		return float64((t1 - t0).Microseconds()) / float64(r.AllCalls)
	}
	r.ServerUs, r.BrokerUs = perCall(server0, server1), perCall(broker0, broker1)
	return r, nil
}

// cpuTime returns the user and system time process pid has used, from
// /proc/<pid>/stat, or -1 where it cannot be read.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if pid == 0 || err != nil {
		return -1
	}
	// Fields after the command, which is in parentheses and may hold spaces:
	// utime and stime are the 12th and 13th, in clock ticks of 1/100 s.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return -1
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return time.Duration(u+s) * 10 * time.Millisecond
}

// readLine reads the first line a child process prints.
func readLine(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	return strings.TrimSuffix(line, "\n"), err
}

// start runs this binary with args and waits for the address it prints.
func start(self string, args ...string) (string, int, func(), error) {
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", 0, nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", 0, nil, err
	}
	stop := func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }
	addr, err := readLine(out)
	if err != nil {
		stop()
		return "", 0, nil, err
	}
	return addr, cmd.Process.Pid, stop, nil
}

// startRedis starts a redis-server and returns its URL and pid, or REDIS_URL
// and 0.
func startRedis() (string, int, func(), error) {
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u, 0, func() {}, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", 0, nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		return "", 0, nil, fmt.Errorf("starting redis-server (is it on PATH?): %w", err)
	}
	stop := func() { cmd.Process.Kill(); cmd.Wait() }
	url := fmt.Sprintf("redis://127.0.0.1:%d", port)
	for range 100 {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return url, cmd.Process.Pid, stop, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	return "", 0, nil, errors.New("redis-server did not start")
}

// broker runs an embedded nats-server until terminated.
// With kind "jetstream" it runs JetStream too, storing in a temporary
// directory.
func broker(kind string) error {
	opts := &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true}
	switch kind {
	case "nats":
	case "jetstream":
		dir, err := os.MkdirTemp("", "bench-jetstream-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		opts.JetStream, opts.StoreDir = true, dir
	default:
		return fmt.Errorf("unknown broker %q", kind)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return err
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		return errors.New("nats-server not ready")
	}
	fmt.Println(ns.ClientURL())
	waitSignal()
	ns.Shutdown()
	return nil
}

func waitSignal() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
}

// redisClient returns a rueidis client with the options the README recommends.
func redisClient(url string) (rueidis.Client, error) {
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	opt.DisableCache = true
	opt.ForceSingleClient = os.Getenv("BENCH_CLUSTER") != "1"
	return rueidis.NewClient(opt)
}

// profileTo starts a CPU profile of this process when BENCH_PROFILE is set.
func profileTo(name string) func() {
	dir := os.Getenv("BENCH_PROFILE")
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", name, os.Getpid())))
	if err != nil {
		return func() {}
	}
	pprof.StartCPUProfile(f)
	return func() { pprof.StopCPUProfile(); f.Close() }
}

func serve(sys, addr string) error {
	defer profileTo("serve-" + sys)()
	handle := func(_ context.Context, p payload) (payload, error) { return p, nil }
	switch sys {
	case "nats":
		nc, err := nats.Connect(addr)
		if err != nil {
			return err
		}
		defer nc.Close()
		_, err = nc.QueueSubscribe("echo", "servers", func(m *nats.Msg) {
			var p payload
			if err := json.Unmarshal(m.Data, &p); err != nil {
				return
			}
			p, _ = handle(context.Background(), p)
			b, _ := json.Marshal(p)
			m.Respond(b)
		})
		if err != nil {
			return err
		}
		nc.Flush()
		fmt.Println("ready")
		waitSignal()
		return nil
	case "nats-raw": // the bytes back, no JSON: transport alone
		nc, err := nats.Connect(addr)
		if err != nil {
			return err
		}
		defer nc.Close()
		if _, err := nc.QueueSubscribe("echo", "servers", func(m *nats.Msg) { m.Respond(m.Data) }); err != nil {
			return err
		}
		nc.Flush()
		fmt.Println("ready")
		waitSignal()
		return nil
	case "psrpc":
		return servePsrpc(addr)
	case "jetstream":
		return serveJetStream(addr)
	case "nats-stream":
		return serveNatsStream(addr)
	case "redisrpc", "redisrpc-sharded", "redisrpc-goccy", "at-least-once", "dedupe", "blocking-pop", "redisrpc-raw", "stream":
		rc, err := redisClient(addr)
		if err != nil {
			return err
		}
		defer rc.Close()
		opts := []redisrpc.MuxOption{shardsOf(sys), codecOf(sys)}
		switch sys {
		case "at-least-once":
			opts = append(opts, redisrpc.WithAtLeastOnce())
		case "dedupe":
			opts = append(opts, redisrpc.WithDedupe(0))
		}
		mux := redisrpc.NewMux(rc, queue, opts...)
		switch sys {
		case "redisrpc-raw":
			redisrpc.Handle(mux, echoRaw, func(_ context.Context, b json.RawMessage) (json.RawMessage, error) { return b, nil })
		case "stream":
			redisrpc.HandleStream(mux, stream, func(_ context.Context, n int, send func(payload) error) error {
				p := payload{Data: strings.Repeat("x", 44)} // 64 bytes of JSON
				for i := range n {
					p.ID = i
					if err := send(p); err != nil {
						return err
					}
				}
				return nil
			})
		default:
			redisrpc.Handle(mux, echo, handle)
		}
		served := make(chan error, 1)
		go func() { served <- mux.Serve(context.Background()) }()
		fmt.Println("ready")
		waitSignal()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		mux.Shutdown(ctx)
		<-served
		return nil
	}
	return fmt.Errorf("unknown system %q", sys)
}

// shardsOf returns the shards option of system sys.
func shardsOf(sys string) redisrpc.Option {
	n := 1
	if sys == "redisrpc-sharded" {
		n, _ = strconv.Atoi(os.Getenv("BENCH_SHARDS"))
	}
	return redisrpc.WithShards(n)
}

// goccy is the Codec of github.com/goccy/go-json.
type goccy struct{}

func (goccy) Marshal(v any) ([]byte, error)      { return gojson.Marshal(v) }
func (goccy) Unmarshal(data []byte, v any) error { return gojson.Unmarshal(data, v) }

// codecOf returns the codec option of system sys: the default but for
// redisrpc-goccy.
func codecOf(sys string) redisrpc.Option {
	if sys == "redisrpc-goccy" {
		return redisrpc.WithCodec(goccy{})
	}
	return redisrpc.WithCodec(nil)
}

func client(args []string) error {
	sys, addr := args[0], args[1]
	defer profileTo("client-" + sys)()
	callers, _ := strconv.Atoi(args[2])
	size, _ := strconv.Atoi(args[3])
	d, _ := time.ParseDuration(args[4])
	req := payload{Data: strings.Repeat("x", max(size-20, 1))}

	var call func(ctx context.Context) error
	// perCaller, where set, makes each caller's call, with state of its own,
	// and what ends it.
	var perCaller func() (func(ctx context.Context) error, func())
	switch sys {
	case "stream":
		rc, err := redisClient(addr)
		if err != nil {
			return err
		}
		defer rc.Close()
		c := redisrpc.NewClient(rc, queue)
		defer c.Close()
		perCaller = func() (func(ctx context.Context) error, func()) {
			var next func() (payload, error, bool)
			stop := func() {}
			return func(ctx context.Context) error {
					for {
						if next == nil {
							next, stop = iter.Pull2(redisrpc.CallStream(context.Background(), c, stream, streamItems))
						}
						_, err, ok := next()
						if ok {
							return err
						}
						stop()
						next = nil
					}
				}, func() {
					stop()
				}
		}
	case "nats-stream":
		nc, err := nats.Connect(addr)
		if err != nil {
			return err
		}
		defer nc.Close()
		perCaller = natsStreamCaller(nc)
	case "nats":
		nc, err := nats.Connect(addr)
		if err != nil {
			return err
		}
		defer nc.Close()
		call = func(ctx context.Context) error {
			b, _ := json.Marshal(req)
			m, err := nc.RequestWithContext(ctx, "echo", b)
			if err != nil {
				return err
			}
			var p payload
			return json.Unmarshal(m.Data, &p)
		}
	case "nats-raw":
		nc, err := nats.Connect(addr)
		if err != nil {
			return err
		}
		defer nc.Close()
		b, _ := json.Marshal(req)
		call = func(ctx context.Context) error {
			_, err := nc.RequestWithContext(ctx, "echo", b)
			return err
		}
	case "psrpc", "jetstream":
		var done func()
		var err error
		if sys == "psrpc" {
			call, done, err = psrpcCaller(addr, size)
		} else {
			call, done, err = jetStreamCaller(addr, req)
		}
		if err != nil {
			return err
		}
		defer done()
	case "redisrpc", "redisrpc-sharded", "redisrpc-goccy", "at-least-once", "dedupe", "blocking-pop", "redisrpc-raw":
		rc, err := redisClient(addr)
		if err != nil {
			return err
		}
		defer rc.Close()
		opts := []redisrpc.ClientOption{shardsOf(sys), codecOf(sys)}
		switch sys {
		case "blocking-pop":
			opts = append(opts, redisrpc.WithClassicServer())
		case "dedupe":
			opts = append(opts, redisrpc.WithRetries(5))
		}
		c := redisrpc.NewClient(rc, queue, opts...)
		defer c.Close()
		call = func(ctx context.Context) error {
			_, err := redisrpc.Call(ctx, c, echo, req)
			return err
		}
		if sys == "redisrpc-raw" {
			raw, _ := json.Marshal(req)
			call = func(ctx context.Context) error {
				_, err := redisrpc.Call(ctx, c, echoRaw, raw)
				return err
			}
		}
	default:
		return fmt.Errorf("unknown system %q", sys)
	}

	var (
		measuring atomic.Bool
		stop      atomic.Bool
		mu        sync.Mutex
		lat       []time.Duration
		errs      atomic.Int64
		all       atomic.Int64 // calls that succeeded, warm-up included
		wg        sync.WaitGroup
	)
	for range callers {
		wg.Go(func() {
			call := call
			if perCaller != nil {
				var done func()
				call, done = perCaller()
				defer done()
			}
			mine := make([]time.Duration, 0, 1<<14)
			for !stop.Load() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				t0 := time.Now()
				err := call(ctx)
				el := time.Since(t0)
				cancel()
				if err == nil {
					all.Add(1)
				}
				if !measuring.Load() {
					continue
				}
				if err != nil {
					errs.Add(1)
					continue
				}
				mine = append(mine, el)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	time.Sleep(time.Second) // warm-up
	measuring.Store(true)
	t0 := time.Now()
	time.Sleep(d)
	measuring.Store(false)
	secs := time.Since(t0).Seconds()
	stop.Store(true)
	wg.Wait()
	slices.Sort(lat)
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(syscall.TimevalToNsec(ru.Utime) + syscall.TimevalToNsec(ru.Stime))
	r := result{Calls: len(lat), Secs: secs, Errors: int(errs.Load()), AllCalls: int(all.Load())}
	if r.AllCalls > 0 {
		r.ClientUs = float64(cpu.Microseconds()) / float64(r.AllCalls)
	}
	if len(lat) > 0 {
		r.P50us = float64(lat[len(lat)/2].Microseconds())
		r.P99us = float64(lat[len(lat)*99/100].Microseconds())
	}
	var buf bytes.Buffer
	json.NewEncoder(&buf).Encode(r)
	_, err := os.Stdout.Write(buf.Bytes())
	return err
}
