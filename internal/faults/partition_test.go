package faults_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/inspect"
)

// partition is a TCP proxy that can black-hole the traffic between its
// clients and Redis without closing a connection, as a network partition
// does: what is sent is never delivered, and no error says so. Cut makes
// every connection it has, and every new one, silent; Heal makes new
// connections work again, while those that were silent stay so for ever, as
// connections whose path is gone.
type partition struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	gen    int  // connections accepted
	deadTo int  // connections up to this one are silent for ever
	cut    bool // new connections are silent too
	conns  []net.Conn
	closed chan struct{}

	closeOnce sync.Once
}

func newPartition(t *testing.T, target string) *partition {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &partition{ln: ln, target: target, closed: make(chan struct{})}
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *partition) addr() string { return p.ln.Addr().String() }

// redisHost returns the address of the tests' Redis, to put a partition in
// front of, or skips t.
func redisHost(t *testing.T) string {
	u, err := url.Parse(redis.URL)
	if err != nil || redis.Embedded {
		t.Skip("needs a Redis to put a proxy in front of (not the embedded one, whose clients need options of their own)")
	}
	return u.Host
}

// client returns a rueidis client that talks to Redis through p, with
// ConnWriteTimeout writeTimeout (0 for rueidis' default, 10 s), closed when
// t ends.
func (p *partition) client(t *testing.T, writeTimeout time.Duration) rueidis.Client {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{p.addr()}, DisableCache: true,
		ForceSingleClient: true, ConnWriteTimeout: writeTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func (p *partition) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.gen++
		gen, cut := p.gen, p.cut
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		if cut {
			p.mu.Lock()
			p.deadTo = max(p.deadTo, gen)
			p.mu.Unlock()
			continue // accepted, and silent: nothing reaches Redis
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, up)
		p.mu.Unlock()
		go p.pipe(up, c, gen)
		go p.pipe(c, up, gen)
	}
}

// pipe copies src to dst until the connection is silenced, then stops
// reading, so that the sender's buffers fill up as over a dead path.
func (p *partition) pipe(dst, src net.Conn, gen int) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			dst.Close()
			return
		}
		p.mu.Lock()
		silent := gen <= p.deadTo
		p.mu.Unlock()
		if silent {
			<-p.closed
			return
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			src.Close()
			return
		}
	}
}

// Cut silences every connection, and new ones, until Heal.
func (p *partition) Cut() {
	p.mu.Lock()
	p.cut, p.deadTo = true, p.gen
	p.mu.Unlock()
}

// Heal lets new connections through; silenced ones stay silent.
func (p *partition) Heal() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

func (p *partition) close() { p.closeOnce.Do(p.closeNow) }

func (p *partition) closeNow() {
	p.ln.Close()
	close(p.closed)
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

// TestPartition: the network between Redis and a server and client goes
// silent for 3 s without closing any connection, then new connections get
// through while the old ones stay dead. Calls end at their deadlines, and
// server and client find their dead connections and serve again within a
// bounded time after the heal: with rueidis' defaults, which find a silent
// connection after 10 s, and with ConnWriteTimeout set to 2 s.
func TestPartition(t *testing.T) {
	t.Parallel()
	host := redisHost(t)
	for _, tt := range []struct {
		name    string
		timeout time.Duration // rueidis' ConnWriteTimeout; 0 for its default, 10 s
		within  time.Duration // recovery after the heal
	}{{"rueidis defaults", 0, 15 * time.Second}, {"ConnWriteTimeout 2s", 2 * time.Second, 5 * time.Second}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPartition(t, host)
			connect := func() rueidis.Client { return p.client(t, tt.timeout) }
			q := newQueue(t)
			serve(t, connect(), q)
			client := redisrpc.NewClient(connect(), q, redisrpc.WithLogger(quiet))
			defer client.Close()
			var healed time.Time
			recovered := underLoad(t, client, 8, func() {
				p.Cut()
				time.Sleep(3 * time.Second)
				p.Heal()
				healed = time.Now()
			})
			if recovered.IsZero() {
				t.Fatal("calls did not succeed again within 15 s of the partition")
			}
			after := recovered.Sub(healed)
			t.Logf("%s: 100 calls succeeded %v after the heal", tt.name, after.Round(10*time.Millisecond))
			if after > tt.within {
				t.Errorf("recovery after the heal: got %v, want within %v", after, tt.within)
			}
		})
	}
}

// TestStopWhileRedisIsSilent: with Redis silent, Shutdown(ctx) returns when
// ctx ends and cuts off the handlers then, and a hard stop (Serve's context)
// cuts them off at once: neither waits for Redis to answer the stop's own
// commands. Serve returns once those time out.
func TestStopWhileRedisIsSilent(t *testing.T) {
	t.Parallel()
	host := redisHost(t)
	for _, hard := range []bool{false, true} {
		t.Run(map[bool]string{false: "Shutdown(200ms)", true: "Serve's context"}[hard], func(t *testing.T) {
			t.Parallel()
			p := newPartition(t, host)
			c := p.client(t, 2*time.Second)
			q := newQueue(t)
			mux := redisrpc.NewMux(c, q, redisrpc.WithLogger(quiet))
			running, cut := make(chan struct{}), make(chan time.Time, 1)
			redisrpc.Handle(mux, Slow, func(ctx context.Context, ms int) (int, error) {
				close(running)
				<-ctx.Done()
				cut <- time.Now()
				return 0, ctx.Err()
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			served := make(chan error, 1)
			go func() { served <- mux.Serve(ctx) }()
			<-mux.Ready()
			client := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet))
			defer client.Close()
			go redisrpc.Call(context.Background(), client, Slow, 1)
			<-running
			p.Cut()
			start := time.Now()
			if hard {
				cancel()
			} else {
				sctx, scancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				err := mux.Shutdown(sctx)
				scancel()
				if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > time.Second {
					t.Errorf("Shutdown(200ms): got %v after %v, want context.DeadlineExceeded at 200ms", err, took.Round(time.Millisecond))
				}
			}
			if at := <-cut; at.Sub(start) > time.Second {
				t.Errorf("the handler's context ended %v after the stop, want within a second", at.Sub(start).Round(time.Millisecond))
			}
			p.close() // Redis answers again, with errors: Serve returns
			select {
			case <-served:
			case <-time.After(30 * time.Second):
				t.Error("Serve did not return within 30 s of the stop")
			}
		})
	}
}

// TestReadyOnlyRegistered: Ready stays open while the server cannot
// register (its Redis silent), and closes once it has.
func TestReadyOnlyRegistered(t *testing.T) {
	t.Parallel()
	host := redisHost(t)
	p := newPartition(t, host)
	c := p.client(t, time.Second)
	p.Cut()
	q := newQueue(t)
	mux := redisrpc.NewMux(c, q, redisrpc.WithLogger(quiet), redisrpc.WithHeartbeat(300*time.Millisecond))
	served := make(chan error, 1)
	go func() { served <- mux.Serve(context.Background()) }()
	defer func() {
		p.close()
		mux.Shutdown(context.Background())
		<-served
	}()
	select {
	case <-mux.Ready():
		t.Fatal("Ready closed while the server could not register")
	case <-time.After(1500 * time.Millisecond):
	}
	p.Heal()
	select {
	case <-mux.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("Ready still open 10 s after Redis came back")
	}
	if ids, err := inspect.Inspect(context.Background(), rc, q); err != nil || len(ids.Servers) != 1 {
		t.Errorf("the registry after Ready: got %+v, %v; want one server", ids, err)
	}
}
