package faults_test

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/internal/keys"
	"github.com/redisrpc/redisrpc/internal/localredis"
)

// startCluster starts a cluster of 3 masters with a replica each, or skips.
func startCluster(t *testing.T) (*localredis.Cluster, rueidis.Client) {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("a cluster needs %s on PATH", bin)
		}
	}
	cl, err := localredis.StartCluster(3, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	c, err := cl.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return cl, c
}

// masterOf returns the address of the master that holds key's slot.
func masterOf(t *testing.T, c rueidis.Client, key string) string {
	t.Helper()
	slots, err := c.Do(context.Background(), c.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		t.Fatal(err)
	}
	slot := keys.Slot(key)
	for _, r := range slots {
		v, _ := r.ToArray()
		lo, _ := v[0].AsInt64()
		hi, _ := v[1].AsInt64()
		if int64(slot) >= lo && int64(slot) <= hi {
			node, _ := v[2].ToArray()
			port, _ := node[1].AsInt64()
			return fmt.Sprintf("127.0.0.1:%d", port)
		}
	}
	t.Fatalf("no master holds slot %d", slot)
	return ""
}

// TestCluster: on a 3-master Redis Cluster both delivery modes work, every
// key of a queue is where Slot says, and shards land on different masters.
func TestCluster(t *testing.T) {
	t.Parallel()
	_, c := startCluster(t)
	ctx := context.Background()

	t.Run("slots", func(t *testing.T) {
		// Queue names with odd braces, and the keys of each of their shards:
		// Redis agrees with keys.Slot, and each key of a list shares its slot.
		for _, q := range []string{newQueue(t), "{calc}", "orders:{eu}", "a}b", "calc}", "jobs{}", "}{", "x{y"} {
			for _, list := range keys.Shards(q, 3) {
				for _, k := range []string{list, keys.Processing(list, "x"), keys.Leases(list), keys.Wake(list, "x")} {
					got, err := c.Do(ctx, c.B().ClusterKeyslot().Key(k).Build()).AsInt64()
					if err != nil || int(got) != keys.Slot(k) {
						t.Errorf("CLUSTER KEYSLOT %s: got %d, %v; keys.Slot says %d", k, got, err, keys.Slot(k))
					}
					if keys.Slot(k) != keys.Slot(list) {
						t.Errorf("%s is in slot %d, its list %s in %d", k, keys.Slot(k), list, keys.Slot(list))
					}
				}
			}
		}
	})
	// Queue names with odd braces serve in both modes, with shards, and
	// calls reach them: the processing keys share the lists' slots.
	t.Run("odd names", func(t *testing.T) {
		for _, name := range []string{"calc}", "jobs{}", "{calc}", "orders:{eu}"} {
			q := fmt.Sprintf("odd:%d:%s", time.Now().UnixNano(), name)
			for _, shards := range []int{1, 3} {
				serve(t, c, q, redisrpc.WithAtLeastOnce(), redisrpc.WithShards(shards))
				client := redisrpc.NewClient(c, q, redisrpc.WithLogger(quiet), redisrpc.WithShards(shards))
				for i := range 6 {
					cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					if got, err := redisrpc.Call(cctx, client, Slow, i); err != nil || got != i {
						t.Errorf("%s with %d shards, call %d: got %d, %v", q, shards, i, got, err)
					}
					cancel()
				}
				client.Close()
			}
		}
	})
	// Answers kept (WithDedupe): on shards other than the queue the answer
	// is kept before the push, and the scripts that give requests back and
	// requeue read keys of the list's slot that they are not given.
	t.Run("dedupe", func(t *testing.T) { dedupeVariety(t, c, false) })
	// A request may name a response list in the slot of its own shard's
	// processing list, which is another slot than the client's: a server
	// answers it with the others, in one transaction per slot, and lives.
	t.Run("response lists in every shard's slot", func(t *testing.T) {
		q := newQueue(t)
		serve(t, c, q, redisrpc.WithAtLeastOnce(), redisrpc.WithShards(3), redisrpc.WithHeartbeat(time.Second))
		client := redisrpc.NewClient(c, q, redisrpc.WithLogger(quiet), redisrpc.WithShards(3))
		defer client.Close()
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		shards := keys.Shards(q, 3)
		var wg sync.WaitGroup
		for round := range 20 {
			for i, list := range shards {
				reply := q + ":rpc:" + list + strconv.Itoa(round)
				body := fmt.Sprintf(`{"function_call":{"name":"slow","args":[1]},"response_queue":%q,"id":"x"}`, reply)
				if err := c.Do(cctx, c.B().Rpush().Key(list).Element(body).Build()).Error(); err != nil {
					t.Fatal(err)
				}
				wg.Go(func() {
					if _, err := c.Do(cctx, c.B().Blpop().Key(reply).Timeout(10).Build()).AsStrSlice(); err != nil {
						t.Errorf("the response to %s on shard %d: %v", reply, i, err)
					}
				})
			}
			for i := range 10 {
				wg.Go(func() {
					if got, err := redisrpc.Call(cctx, client, Slow, i); err != nil || got != i {
						t.Errorf("call %d of round %d: got %d, %v", i, round, got, err)
					}
				})
			}
		}
		wg.Wait()
	})
	for _, mode := range []string{"at-most-once", "at-least-once"} {
		t.Run(mode, func(t *testing.T) {
			q := newQueue(t)
			opts := []redisrpc.MuxOption{redisrpc.WithShards(3)}
			if mode == "at-least-once" {
				opts = append(opts, redisrpc.WithAtLeastOnce(), redisrpc.WithHeartbeat(time.Second))
			}
			serve(t, c, q, opts...)
			masters := map[string]bool{}
			for _, name := range keys.Shards(q, 3) {
				masters[masterOf(t, c, name)] = true
			}
			if len(masters) != 3 {
				t.Errorf("3 shards on %d masters, want 3", len(masters))
			}
			shared := redisrpc.NewClient(c, q, redisrpc.WithLogger(quiet), redisrpc.WithShards(3))
			defer shared.Close()
			classic := redisrpc.NewClient(c, q, redisrpc.WithLogger(quiet), redisrpc.WithClassicServer())
			defer classic.Close()
			cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			for i := range 300 {
				wg.Go(func() {
					client := shared
					if i%10 == 0 {
						client = classic
					}
					if got, err := redisrpc.Call(cctx, client, Slow, i%3); err != nil || got != i%3 {
						t.Errorf("call %d: got %d, %v", i, got, err)
					}
				})
			}
			wg.Wait()
		})
	}
}

// TestClusterFailover: a master fails over, first by CLUSTER FAILOVER on its
// replica and then by being killed, under load: no call outlives its deadline
// and traffic resumes on the new master by itself.
func TestClusterFailover(t *testing.T) {
	t.Parallel()
	cl, c := startCluster(t)
	q := newQueue(t)
	serve(t, c, q, redisrpc.WithAtLeastOnce(), redisrpc.WithHeartbeat(time.Second))
	client := redisrpc.NewClient(c, q, redisrpc.WithLogger(quiet))
	defer client.Close()

	t.Run("CLUSTER FAILOVER", func(t *testing.T) {
		master := masterOf(t, c, q)
		replica := replicaOf(t, master)
		underLoad(t, client, 16, func() {
			if out, err := exec.Command("redis-cli", "-p", port(replica), "cluster", "failover").CombinedOutput(); err != nil {
				t.Fatalf("CLUSTER FAILOVER: %v %s", err, out)
			}
			waitMaster(t, c, q, replica)
		})
	})
	t.Run("killed master", func(t *testing.T) {
		master := masterOf(t, c, q)
		replica := replicaOf(t, master)
		underLoad(t, client, 16, func() {
			for _, n := range cl.Nodes {
				if n.Addr() == master {
					n.Kill()
				}
			}
			waitMaster(t, c, q, replica)
		})
	})
}

// replicaOf returns the address of a replica of master, from CLUSTER NODES.
func replicaOf(t *testing.T, master string) string {
	t.Helper()
	var out []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var err error
		if out, err = exec.Command("redis-cli", "-p", port(master), "cluster", "nodes").CombinedOutput(); err != nil {
			continue
		}
		var masterID string
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		for _, l := range lines {
			if f := strings.Fields(l); len(f) > 3 && strings.HasPrefix(f[1], master+"@") {
				masterID = f[0]
			}
		}
		for _, l := range lines {
			if f := strings.Fields(l); len(f) > 3 && f[3] == masterID && !strings.Contains(f[2], "fail") {
				return strings.Split(f[1], "@")[0]
			}
		}
	}
	t.Fatalf("no replica of %s in\n%s", master, out)
	return ""
}

// waitMaster waits until addr serves key's slot.
func waitMaster(t *testing.T, c rueidis.Client, key, addr string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		out, _ := exec.Command("redis-cli", "-p", port(addr), "role").Output()
		if strings.HasPrefix(string(out), "master") {
			return
		}
	}
	t.Fatalf("%s did not become master", addr)
}

func port(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

// TestSentinelFailover: the primary of a Sentinel set-up is killed under load;
// no call outlives its deadline and traffic resumes on the promoted replica.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("Sentinel needs redis-server on PATH")
	}
	s, err := localredis.StartSentinel()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := newQueue(t)
	serve(t, c, q, redisrpc.WithAtLeastOnce(), redisrpc.WithHeartbeat(time.Second))
	client := redisrpc.NewClient(c, q, redisrpc.WithLogger(quiet))
	defer client.Close()
	underLoad(t, client, 16, func() {
		s.Primary.Kill()
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			out, _ := exec.Command("redis-cli", "-p", strconv.Itoa(s.Replica.Port), "role").Output()
			if strings.HasPrefix(string(out), "master") {
				return
			}
		}
		t.Fatal("the replica was not promoted")
	})
}
