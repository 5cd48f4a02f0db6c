package localredis

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// Node is a redis-server process: of a Cluster, of a Sentinel set-up, or of
// its own (StartNode).
type Node struct {
	Port int
	cmd  *exec.Cmd
	done chan struct{}
}

// Addr is the node's address on loopback.
func (n *Node) Addr() string { return fmt.Sprintf("127.0.0.1:%d", n.Port) }

// Kill stops the node with SIGKILL and waits for it to exit.
func (n *Node) Kill() {
	n.cmd.Process.Kill()
	<-n.done
}

// Cluster is a Redis Cluster on loopback, made of redis-server processes.
type Cluster struct {
	Nodes []*Node
	dir   string
}

// StartCluster starts masters*(1+replicas) redis-server nodes in cluster mode
// and joins them with redis-cli --cluster create, which gives the masters equal
// ranges of slots. It needs redis-server and redis-cli on PATH.
func StartCluster(masters, replicas int) (*Cluster, error) {
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("a cluster needs %s on PATH: %w", bin, err)
		}
	}
	dir, err := os.MkdirTemp("", "redisrpc-cluster-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir}
	args := []string{"--cluster", "create"}
	for range masters * (1 + replicas) {
		port, err := freePort()
		if err != nil {
			c.Close()
			return nil, err
		}
		n, err := startNode(dir, port, "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", port)), "--cluster-node-timeout", "2000")
		if err != nil {
			c.Close()
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
		args = append(args, n.Addr())
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redis-cli --cluster create: %w\n%s", err, out)
	}
	if err := c.waitOK(masters*replicas, 30*time.Second); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// waitOK waits until every node says the cluster is ok, knows all nodes and
// sees all replicas attached.
func (c *Cluster) waitOK(replicas int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		ok := true
		for _, n := range c.Nodes {
			info, err := exec.Command("redis-cli", "-p", strconv.Itoa(n.Port), "cluster", "info").Output()
			nodes, err2 := exec.Command("redis-cli", "-p", strconv.Itoa(n.Port), "cluster", "nodes").Output()
			if err != nil || err2 != nil || !strings.Contains(string(info), "cluster_state:ok") ||
				!strings.Contains(string(info), fmt.Sprintf("cluster_known_nodes:%d", len(c.Nodes))) ||
				strings.Count(string(nodes), " slave ")+strings.Count(string(nodes), ",slave ") != replicas {
				ok = false
				break
			}
		}
		if ok {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("the cluster did not become ok")
}

// URL is the address of one node, from which clients find the others.
func (c *Cluster) URL() string { return "redis://" + c.Nodes[0].Addr() }

// Client returns a rueidis cluster client; the caller closes it.
func (c *Cluster) Client() (rueidis.Client, error) {
	return rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{c.Nodes[0].Addr()}, DisableCache: true})
}

// Close stops every node and removes their files.
func (c *Cluster) Close() {
	for _, n := range c.Nodes {
		n.Kill()
	}
	os.RemoveAll(c.dir)
}

// Sentinel is a primary, a replica and one sentinel watching them as "main".
type Sentinel struct {
	Primary, Replica, Sentinel *Node
	dir                        string
}

// StartSentinel starts a Sentinel set-up that fails over after one second
// without the primary. It needs redis-server on PATH.
func StartSentinel() (*Sentinel, error) {
	dir, err := os.MkdirTemp("", "redisrpc-sentinel-")
	if err != nil {
		return nil, err
	}
	s := &Sentinel{dir: dir}
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			s.Close()
			return nil, err
		}
	}
	if s.Primary, err = startNode(dir, ports[0]); err != nil {
		s.Close()
		return nil, err
	}
	if s.Replica, err = startNode(dir, ports[1], "--replicaof", "127.0.0.1", strconv.Itoa(ports[0])); err != nil {
		s.Close()
		return nil, err
	}
	conf := filepath.Join(dir, "sentinel.conf")
	err = os.WriteFile(conf, fmt.Appendf(nil, "port %d\nbind 127.0.0.1\nsentinel monitor main 127.0.0.1 %d 1\n"+
		"sentinel down-after-milliseconds main 1000\nsentinel failover-timeout main 5000\n", ports[2], ports[0]), 0o600)
	if err != nil {
		s.Close()
		return nil, err
	}
	if s.Sentinel, err = startProcess(ports[2], "redis-server", conf, "--sentinel"); err != nil {
		s.Close()
		return nil, err
	}
	// Wait until the sentinel knows the replica, so that it can fail over.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := exec.Command("redis-cli", "-p", strconv.Itoa(ports[2]), "sentinel", "replicas", "main").Output()
		if strings.Contains(string(out), strconv.Itoa(ports[1])) {
			return s, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.Close()
	return nil, errors.New("the sentinel did not find the replica")
}

// Client returns a rueidis client that follows the primary through the
// sentinel; the caller closes it.
func (s *Sentinel) Client() (rueidis.Client, error) {
	return rueidis.NewClient(rueidis.ClientOption{
		InitAddress:  []string{s.Sentinel.Addr()},
		Sentinel:     rueidis.SentinelOption{MasterSet: "main", TopologyRefreshInterval: time.Second},
		DisableCache: true,
	})
}

// Close stops every process and removes their files.
func (s *Sentinel) Close() {
	for _, n := range []*Node{s.Sentinel, s.Replica, s.Primary} {
		if n != nil {
			n.Kill()
		}
	}
	os.RemoveAll(s.dir)
}

// StartNode starts a redis-server of its own on loopback, on port (0: a free
// one), without persistence, its files in dir; extra arguments come last and
// override those. It returns once the server answers PING; Kill stops it.
func StartNode(dir string, port int, extra ...string) (*Node, error) {
	if port == 0 {
		var err error
		if port, err = freePort(); err != nil {
			return nil, err
		}
	}
	return startNode(dir, port, extra...)
}

func startNode(dir string, port int, extra ...string) (*Node, error) {
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--loglevel", "warning"}, extra...)
	return startProcess(port, "redis-server", args...)
}

func startProcess(port int, bin string, args ...string) (*Node, error) {
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := &Node{Port: port, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(n.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-n.done:
			return nil, fmt.Errorf("%s on port %d exited", bin, port)
		default:
		}
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{n.Addr()}, DisableCache: true, ForceSingleClient: true})
		if err == nil {
			err = c.Do(context.Background(), c.B().Ping().Build()).Error()
			c.Close()
			if err == nil {
				return n, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.Kill()
	return nil, fmt.Errorf("%s on port %d did not answer", bin, port)
}
