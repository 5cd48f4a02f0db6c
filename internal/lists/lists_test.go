package lists

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/internal/localredis"
)

var (
	rc  rueidis.Client
	srv *localredis.Server
)

func TestMain(m *testing.M) {
	var err error
	var c rueidis.Client
	srv, c, err = localredis.StartWithClient(localredis.Any)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rc = c
	code := m.Run()
	c.Close()
	srv.Close()
	os.Exit(code)
}

// TestStranded: a request is stranded once nothing has held it across
// scans at least the threshold apart; held copies and new arrivals are not.
func TestStranded(t *testing.T) {
	var h held
	t0 := time.Unix(1000, 0)
	after := 5 * time.Second
	h.add([]string{"a", "b", "b"})
	content := []string{"x", "a", "b", "b", "b", "y"}
	if got := h.stranded(content, t0, after); len(got) != 0 {
		t.Fatalf("first sighting: got %q, want none", got)
	}
	if got := h.stranded(content, t0.Add(after-time.Millisecond), after); len(got) != 0 {
		t.Fatalf("before the threshold: got %q, want none", got)
	}
	h.release("a")
	content = append(content, "z") // z arrives: a suspect from now on
	got := h.stranded(content, t0.Add(after), after)
	if want := []string{"x", "b", "y"}; !slices.Equal(got, want) {
		t.Fatalf("at the threshold: got %q, want %q (a was released only now)", got, want)
	}
	if got := h.stranded([]string{"a", "z"}, t0.Add(after+time.Second), after); len(got) != 0 {
		t.Fatalf("a second later: got %q, want none", got)
	}
	if got := h.stranded([]string{"a", "z"}, t0.Add(2*after), after); !slices.Equal(got, []string{"a", "z"}) {
		t.Fatalf("later: got %q, want [a z]", got)
	}
	if got := h.stranded(nil, t0.Add(3*after), after); len(got) != 0 || len(h.suspects) != 0 {
		t.Fatalf("an empty list: got %q and suspects %v, want none", got, h.suspects)
	}
}

// TestGiveBack: requests given back go to the head of their list in their
// order, from a processing list at least once.
func TestGiveBack(t *testing.T) {
	ctx := context.Background()
	for _, reliable := range []bool{false, true} {
		q := fmt.Sprintf("lists:%s:%v:%d", t.Name(), reliable, time.Now().UnixNano())
		s := NewSource(rc, q, 1, "me", time.Second, reliable, Redelivery{})
		if err := rc.Do(ctx, rc.B().Rpush().Key(q).Element("1", "2", "3", "4").Build()).Error(); err != nil {
			t.Fatal(err)
		}
		msgs, err := s.Pop(ctx, s.Loops()[0], time.Second, 2)
		if err != nil || len(msgs) != 2 {
			t.Fatalf("reliable=%v: Pop: got %v, %v; want 2", reliable, msgs, err)
		}
		if err := s.GiveBack(ctx, msgs); err != nil {
			t.Fatal(err)
		}
		got, err := rc.Do(ctx, rc.B().Lrange().Key(q).Start(0).Stop(-1).Build()).AsStrSlice()
		if err != nil || !slices.Equal(got, []string{"1", "2", "3", "4"}) {
			t.Errorf("reliable=%v: the queue after GiveBack: got %q, %v; want [1 2 3 4]", reliable, got, err)
		}
		if n, _ := rc.Do(ctx, rc.B().Llen().Key(s.lists[0].processing).Build()).AsInt64(); n != 0 {
			t.Errorf("reliable=%v: %d left in the processing list", reliable, n)
		}
		if len(s.lists[0].held.n) != 0 {
			t.Errorf("reliable=%v: still held: %v", reliable, s.lists[0].held.n)
		}
	}
}

// TestWake: Wake ends every waiting pop of a server at once, one per loop,
// and they take nothing.
func TestWake(t *testing.T) {
	ctx := context.Background()
	q := fmt.Sprintf("lists:%s:%d", t.Name(), time.Now().UnixNano())
	s := NewSource(rc, q, 1, "me", time.Second, false, Redelivery{})
	done := make(chan int, len(s.Loops()))
	for _, loop := range s.Loops() {
		go func() {
			msgs, _ := s.Pop(ctx, loop, 5*time.Second, 10)
			done <- len(msgs)
		}()
	}
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	if err := s.Wake(ctx); err != nil {
		t.Fatal(err)
	}
	for range s.Loops() {
		if n := <-done; n != 0 {
			t.Errorf("a woken pop took %d messages, want 0", n)
		}
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the pops ended %v after Wake, want at once", took)
	}
}

// TestRespondAtomic: responses that share their processing list's slot are
// pushed, their list given its expiry, and their requests removed in one
// transaction per response list; a response list that cannot take them (not
// a list) fails its group alone, whose requests, which ran, leave all the
// same: no answer can reach their caller.
func TestRespondAtomic(t *testing.T) {
	ctx := context.Background()
	run := time.Now().UnixNano() // keys of this run only, as REDIS_URL's server may keep others
	processing := fmt.Sprintf("{ra%d}:processing:s1", run)
	replies := []string{fmt.Sprintf("{ra%d}:reply:a", run), fmt.Sprintf("{ra%d}:reply:b", run), fmt.Sprintf("{ra%d}:reply:c", run)}
	// Not a list: RPUSH to it fails when the transaction runs.
	if err := rc.Do(ctx, rc.B().Set().Key(replies[2]).Value("x").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	var batch []Item
	for i := range 6 {
		req := fmt.Sprintf("req%d", i)
		if err := rc.Do(ctx, rc.B().Rpush().Key(processing).Element(req).Build()).Error(); err != nil {
			t.Fatal(err)
		}
		batch = append(batch, Item{Key: replies[i%3], Value: fmt.Sprintf("resp%d", i), AckList: processing, Ack: req})
	}
	var settled, failed []string
	var failure error
	p := NewPusher(rc, PusherConfig{TTL: 30,
		OnError: func(items []Item, err error) {
			for _, it := range items {
				failed = append(failed, it.Value)
			}
			failure = err
		},
		OnSettled: func(it Item) { settled = append(settled, it.Ack) }})
	p.write(batch)
	for i, key := range replies[:2] {
		got, err := rc.Do(ctx, rc.B().Lrange().Key(key).Start(0).Stop(-1).Build()).AsStrSlice()
		want := []string{fmt.Sprintf("resp%d", i), fmt.Sprintf("resp%d", i+3)}
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s holds %q, %v; want %q", key, got, err, want)
		}
		if ttl, _ := rc.Do(ctx, rc.B().Ttl().Key(key).Build()).AsInt64(); ttl <= 0 || ttl > 30 {
			t.Errorf("%s expires in %ds, want 30", key, ttl)
		}
	}
	if want := []string{"resp2", "resp5"}; !slices.Equal(failed, want) || failure == nil {
		t.Errorf("failed: %q (%v); want %q with an error", failed, failure, want)
	}
	left, _ := rc.Do(ctx, rc.B().Lrange().Key(processing).Start(0).Stop(-1).Build()).AsStrSlice()
	if len(left) != 0 || len(settled) != 6 {
		t.Errorf("left in the processing list %q, %d settled; want none and 6", left, len(settled))
	}
}

// failLast is a client whose pipelines fail their last command without
// sending it, as when one LMOVE of a batch is refused.
type failLast struct{ rueidis.Client }

func (f failLast) DoMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	res := f.Client.DoMulti(ctx, cmds[:len(cmds)-1]...)
	return append(res, rueidis.NewErrorResult(fmt.Errorf("refused")))
}

// TestMovePartly: when some LMOVEs of a batch move requests and another
// fails, the pop returns what moved, to be served, not the error.
func TestMovePartly(t *testing.T) {
	ctx := context.Background()
	q := fmt.Sprintf("lists:TestMovePartly:%d", time.Now().UnixNano())
	l := &list{name: q, processing: q + ":processing"}
	l.moved.Store(1) // the next move sends 4 LMOVEs
	t.Cleanup(func() { rc.Do(ctx, rc.B().Del().Key(q, l.processing).Build()) })
	if err := rc.Do(ctx, rc.B().Rpush().Key(q).Element("a", "b").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	msgs, err := l.move(ctx, failLast{rc}, 10)
	if err != nil || !slices.Equal(msgs, []string{"a", "b"}) {
		t.Errorf("got %q, %v; want [a b] and no error", msgs, err)
	}
	if msgs, err := l.move(ctx, failLast{rc}, 10); err == nil || len(msgs) != 0 {
		t.Errorf("a move that moved nothing and failed: got %q, %v; want the error", msgs, err)
	}
}

// TestCancelledPopLeavesNoConnection: a pop cut short by its context, and
// the client closed right after, leave no connection open (rueidis' own
// CLIENT UNBLOCK, sent from a goroutine of its own, could open one after
// Close).
func TestCancelledPopLeavesNoConnection(t *testing.T) {
	pops := map[string]func(ctx context.Context, c rueidis.Client, key string) error{
		"Popper": func(ctx context.Context, c rueidis.Client, key string) error {
			_, _, err := NewPopper(c, true).Pop(ctx, []string{key}, 5*time.Second, 10)
			return err
		},
		"at least once": func(ctx context.Context, c rueidis.Client, key string) error {
			_, err := (&list{name: key, processing: key + ":processing"}).pop(ctx, c, 5*time.Second, 1)
			return err
		},
	}
	for name, pop := range pops {
		t.Run(name, func(t *testing.T) {
			for i := range 20 {
				var open sync.Map
				opt, err := srv.Options()
				if err != nil {
					t.Fatal(err)
				}
				opt.DialCtxFn = func(ctx context.Context, addr string, d *net.Dialer, _ *tls.Config) (net.Conn, error) {
					conn, err := d.DialContext(ctx, "tcp", addr)
					if err == nil {
						conn = &trackedConn{Conn: conn, open: &open}
						open.Store(conn, true)
					}
					return conn, err
				}
				c, err := rueidis.NewClient(opt)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				err = pop(ctx, c, fmt.Sprintf("{test}:nothing:%s:%d", t.Name(), i))
				cancel()
				c.Close()
				if err == nil {
					t.Fatalf("pop of an empty list: got no error, want the context's")
				}
				n := 0
				for wait := time.Now(); time.Since(wait) < time.Second; time.Sleep(10 * time.Millisecond) {
					n = 0
					open.Range(func(any, any) bool { n++; return true })
					if n == 0 {
						break
					}
				}
				if n > 0 {
					t.Fatalf("round %d: got %d connections open after Close, want 0", i, n)
				}
			}
		})
	}
}

// TestCancelledPopTakesNothingLater: at least once, a pop cut short while
// its blocking move waits takes none of the requests pushed after it, on
// Redis and on the embedded server, even after a pop that moved several (a
// batch that next time would send LMOVEs). miniredis reads a command ahead:
// with LMOVEs queued behind a cancelled BLMOVE it did not see the
// connection close, and the BLMOVE and LMOVEs moved what came in the
// second after the cancel into the processing list of a server that had
// stopped (a pop design tried on 2026-12-03 and not kept).
func TestCancelledPopTakesNothingLater(t *testing.T) {
	servers := map[string]func(t *testing.T) rueidis.Client{
		"tests' redis": func(*testing.T) rueidis.Client { return rc },
		"embedded": func(t *testing.T) rueidis.Client {
			s, c, err := localredis.StartWithClient(localredis.Embedded)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			t.Cleanup(c.Close)
			return c
		},
	}
	for name, server := range servers {
		t.Run(name, func(t *testing.T) {
			c := server(t)
			ctx := context.Background()
			q := fmt.Sprintf("{lists}:TestCancelledPopTakesNothingLater:%d", time.Now().UnixNano())
			l := &list{name: q, processing: q + ":processing"}
			t.Cleanup(func() { c.Do(ctx, c.B().Del().Key(q, l.processing).Build()) })
			if err := c.Do(ctx, c.B().Rpush().Key(q).Element("1", "2").Build()).Error(); err != nil {
				t.Fatal(err)
			}
			if msgs, err := l.pop(ctx, c, time.Second, 10); err != nil || len(msgs) != 2 {
				t.Fatalf("the first pop: got %q, %v; want both requests", msgs, err)
			}
			pctx, cancel := context.WithCancel(ctx)
			time.AfterFunc(200*time.Millisecond, cancel)
			if msgs, err := l.pop(pctx, c, time.Second, 10); len(msgs) != 0 || err == nil {
				t.Fatalf("the cancelled pop: got %q, %v; want nothing and the context's error", msgs, err)
			}
			time.Sleep(50 * time.Millisecond)
			if err := c.Do(ctx, c.B().Rpush().Key(q).Element("a", "b", "c").Build()).Error(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1500 * time.Millisecond) // past the blocking move's timeout, had it stayed
			queued, err := c.Do(ctx, c.B().Lrange().Key(q).Start(0).Stop(-1).Build()).AsStrSlice()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(queued, []string{"a", "b", "c"}) {
				moved, _ := c.Do(ctx, c.B().Lrange().Key(l.processing).Start(0).Stop(-1).Build()).AsStrSlice()
				t.Errorf("pushed after the cancel: queued %q, processing list %q; want all three queued", queued, moved)
			}
		})
	}
}

type trackedConn struct {
	net.Conn
	open *sync.Map
}

func (c *trackedConn) Close() error {
	c.open.Delete(c)
	return c.Conn.Close()
}

// slowDoMulti is a client whose pipelines take 2ms more.
type slowDoMulti struct{ rueidis.Client }

func (s slowDoMulti) DoMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	time.Sleep(2 * time.Millisecond)
	return s.Client.DoMulti(ctx, cmds...)
}

// TestPusherBatches: concurrent pushes to several lists, more than a batch
// holds, with the Pusher's buffers reused from batch to batch, arrive each
// once and, per pushing goroutine and list, in order; plain and with Acks.
func TestPusherBatches(t *testing.T) {
	for _, inline := range []bool{false, true} {
		t.Run(fmt.Sprintf("inline=%v", inline), func(t *testing.T) {
			ctx := context.Background()
			prefix := fmt.Sprintf("{pb}:%s:%d", t.Name(), time.Now().UnixNano())
			processing := prefix + ":processing"
			lists := []string{prefix + ":a", prefix + ":b", prefix + ":c"}
			const pushers, each = 8, 300
			var acks []string
			for g := range pushers {
				for i := range each {
					if g%2 == 1 {
						acks = append(acks, fmt.Sprintf("req-%d-%d", g, i))
					}
				}
			}
			if err := rc.Do(ctx, rc.B().Rpush().Key(processing).Element(acks...).Build()).Error(); err != nil {
				t.Fatal(err)
			}
			var settled atomic.Int64
			// Slow round trips let more than a batch queue up.
			p := NewPusher(slowDoMulti{rc}, PusherConfig{Inline: inline, TTL: 60,
				OnError:   func(_ []Item, err error) { t.Errorf("push failed: %v", err) },
				OnSettled: func(Item) { settled.Add(1) }})
			var wg sync.WaitGroup
			for g := range pushers {
				wg.Go(func() {
					for i := range each {
						it := Item{Key: lists[(g+i)%len(lists)], Value: fmt.Sprintf("%d-%d", g, i)}
						if g%2 == 1 { // half of them answer requests
							it.AckList, it.Ack = processing, fmt.Sprintf("req-%d-%d", g, i)
						}
						p.Push(it)
					}
				})
			}
			wg.Wait()
			total := 0
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				total = 0
				for _, l := range lists {
					n, _ := rc.Do(ctx, rc.B().Llen().Key(l).Build()).AsInt64()
					total += int(n)
				}
				if total == pushers*each && settled.Load() == int64(len(acks)) {
					break
				}
			}
			p.Stop()
			p.Wait()
			if total != pushers*each || settled.Load() != int64(len(acks)) {
				t.Fatalf("got %d messages and %d settled, want %d and %d", total, settled.Load(), pushers*each, len(acks))
			}
			next := make(map[string]int) // per list and pusher: the next i
			for _, l := range lists {
				got, err := rc.Do(ctx, rc.B().Lrange().Key(l).Start(0).Stop(-1).Build()).AsStrSlice()
				if err != nil {
					t.Fatal(err)
				}
				for _, v := range got {
					var g, i int
					if _, err := fmt.Sscanf(v, "%d-%d", &g, &i); err != nil || lists[(g+i)%len(lists)] != l {
						t.Fatalf("%s holds %q, pushed elsewhere", l, v)
					}
					k := fmt.Sprint(l, g)
					if i < next[k] {
						t.Fatalf("%s holds %q after %d-%d: out of order", l, v, g, next[k]-1)
					}
					next[k] = i + 1
				}
			}
			if left, _ := rc.Do(ctx, rc.B().Llen().Key(processing).Build()).AsInt64(); left != 0 {
				t.Errorf("%d requests left in the processing list, want 0", left)
			}
		})
	}
}
