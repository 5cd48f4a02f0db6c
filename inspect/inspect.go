// Package inspect reads what the servers of redisrpc services publish in
// Redis, and what waits in their queues: which services there are, which
// servers serve a queue, their functions and counters, the queue's depth and
// its oldest request, the requests servers hold in at-least-once mode, and
// the dead letters, which it can also requeue or purge. It changes nothing
// else, and works on Redis Cluster. The keys it reads are listed in
// docs/protocol.md.
//
// A queue's lists are those of every shard count its servers recorded, so
// that its depth and dead letters are seen while no server is live. A dead
// letter is named by its Ref, and Requeue acts on that one alone; it refuses
// one whose caller was told it failed (DeadLetter.Answered) unless given
// WithAnswered. Servers publish their counts at each beat: Rates turns them
// into rates between each server's beats.
package inspect

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/internal/keys"
	"github.com/redisrpc/redisrpc/internal/registry"
	"github.com/redisrpc/redisrpc/internal/stats"
	"github.com/redisrpc/redisrpc/internal/wire"
)

// Service is a queue of the registry's index of services.
type Service struct {
	Queue     string
	Servers   int      // live servers
	Functions []string // served by any live server, sorted
	Depth     int64    // requests waiting, over all shards
	LastBeat  time.Time
	// Err says why the queue could not be read where Redis refused a
	// command on one of its keys (a key of another type, say); its counts
	// are then zero. The other queues are read all the same.
	Err error
}

// Services returns the services whose servers beat in the last day, sorted
// by queue, with their live servers, functions and depth.
func Services(ctx context.Context, rc rueidis.Client) ([]Service, error) {
	entries, err := rc.Do(ctx, rc.B().Zrange().Key(keys.Services).Min("0").Max("-1").Withscores().Build()).AsZScores()
	if err != nil {
		return nil, err
	}
	// The queues are read a few at a time, whose commands rueidis pipelines:
	// the index keeps a day of queues, thousands where tests make their own.
	out := make([]Service, len(entries))
	errs := make([]error, len(entries))
	sem := make(chan struct{}, servicesAtOnce)
	var wg sync.WaitGroup
	for i, e := range entries {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			q, err := Inspect(ctx, rc, e.Member)
			if _, refused := rueidis.IsRedisErr(err); refused {
				out[i] = Service{Queue: e.Member, LastBeat: time.UnixMilli(int64(e.Score)), Err: err}
				return
			}
			if err != nil {
				errs[i] = err
				return
			}
			s := Service{Queue: e.Member, Servers: len(q.Servers), Depth: q.Depth, LastBeat: time.UnixMilli(int64(e.Score))}
			for _, f := range q.Functions {
				s.Functions = append(s.Functions, f.Name)
			}
			out[i] = s
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	slices.SortFunc(out, func(a, b Service) int { return strings.Compare(a.Queue, b.Queue) })
	return out, nil
}

// servicesAtOnce is how many queues Services reads at once.
const servicesAtOnce = 16

// Queue is what the registry and Redis say of one queue now. Its lists are
// those of every shard count its servers recorded at their beats, whether
// or not one is live, and of the live servers' counts.
type Queue struct {
	Name      string
	Servers   []Server   // live servers, by id
	Functions []Function // served by any live server, by name
	Lists     []List     // the queue and its shards, of every count recorded or live
	Depth     int64      // requests waiting, over all lists
	// Oldest is how long the oldest request at the head of a list has
	// waited, from its sent member (the client's clock); 0 where no list
	// holds a request that says when it was sent.
	Oldest     time.Duration
	Processing []Processing // at least once: requests servers hold, live or gone
	// Stats sums the live servers' counts by function; calls of functions
	// they do not serve count under "".
	Stats map[string]FunctionStats
}

// Server is a live server of a queue, as it last published itself.
type Server struct {
	ID          string
	Host        string
	PID         int
	Started     time.Time
	Version     string // of redisrpc
	Mode        string // "at-most-once" or "at-least-once"
	Concurrency int
	Shards      int
	MaxMessage  int
	Heartbeat   time.Duration
	InFlight    int64
	Pops, Taken int64
	Functions   []Function
	Stats       map[string]FunctionStats
	Updated     time.Time // of its last beat; zero if it has published nothing yet
}

// Function is a function a server serves, with its Go types and their JSON
// Schemas (draft 2020-12), nil from older servers, which publish none.
type Function struct {
	Name, Request, Response       string
	RequestSchema, ResponseSchema json.RawMessage
	Stream                        bool // a stream endpoint: Response is its items' type
}

// List is one request list of a queue.
type List struct {
	Name   string
	Depth  int64
	Oldest time.Duration // see Queue.Oldest
}

// Processing is the requests one server holds in one list's processing
// list; Live says whether its lease runs.
type Processing struct {
	Server, List string
	Requests     int64
	Live         bool
}

// FunctionStats counts the calls of a function since its servers started.
type FunctionStats struct {
	Calls         uint64
	Errors        map[string]uint64 // failed calls by code; "" for those without
	P50, P90, P99 time.Duration     // handling time, within a fifth
	hist          *stats.Snapshot
}

// Since returns the counts of s that came after prev, an earlier reading of
// the same function, with the percentiles of that window alone.
func (s FunctionStats) Since(prev FunctionStats) FunctionStats {
	d := FunctionStats{Calls: s.Calls - min(prev.Calls, s.Calls), Errors: map[string]uint64{}}
	for code, n := range s.Errors {
		if n -= min(prev.Errors[code], n); n > 0 {
			d.Errors[code] = n
		}
	}
	if s.hist != nil {
		d.hist = s.hist.Since(prev.hist)
		d.P50, d.P90, d.P99 = d.hist.Quantile(0.5), d.hist.Quantile(0.9), d.hist.Quantile(0.99)
	}
	return d
}

func (s *FunctionStats) add(o registry.FunctionStats) {
	s.Calls += o.Calls
	if s.Errors == nil {
		s.Errors = map[string]uint64{}
	}
	for code, n := range o.Errors {
		s.Errors[code] += n
	}
	h := stats.FromSparse(o.Hist)
	if s.hist == nil {
		s.hist = new(stats.Snapshot)
	}
	for i := range h {
		s.hist[i] += h[i]
	}
	s.P50, s.P90, s.P99 = s.hist.Quantile(0.5), s.hist.Quantile(0.9), s.hist.Quantile(0.99)
}

// Inspect returns what the registry and Redis say of queue now.
func Inspect(ctx context.Context, rc rueidis.Client, queue string) (*Queue, error) {
	infos, err := registry.Live(ctx, rc, queue)
	if err != nil {
		return nil, err
	}
	q := &Queue{Name: queue, Stats: map[string]FunctionStats{}}
	functions := map[string]Function{}
	for _, info := range infos {
		srv := Server{
			ID: info.ID, Host: info.Host, PID: info.PID, Version: info.Version, Mode: info.Mode,
			Concurrency: info.Concurrency, Shards: info.Shards, MaxMessage: info.MaxMessage,
			Heartbeat: time.Duration(info.HeartbeatMS) * time.Millisecond,
			InFlight:  info.Stats.InFlight, Pops: info.Stats.Pops, Taken: info.Stats.Taken,
			Stats: map[string]FunctionStats{},
		}
		if info.Started > 0 {
			srv.Started = time.UnixMilli(info.Started)
		}
		if info.Updated > 0 {
			srv.Updated = time.UnixMilli(info.Updated)
		}
		for _, f := range info.Functions {
			fn := Function(f)
			srv.Functions = append(srv.Functions, fn)
			functions[f.Name] = fn
		}
		for name, fs := range info.Stats.Functions {
			var one FunctionStats
			one.add(fs)
			srv.Stats[name] = one
			sum := q.Stats[name]
			sum.add(fs)
			q.Stats[name] = sum
		}
		q.Servers = append(q.Servers, srv)
	}
	slices.SortFunc(q.Servers, func(a, b Server) int { return strings.Compare(a.ID, b.ID) })
	for _, name := range slices.Sorted(maps.Keys(functions)) {
		q.Functions = append(q.Functions, functions[name])
	}
	names, err := listNames(ctx, rc, queue, infos)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	for _, name := range names {
		l, err := list(ctx, rc, name, now)
		if err != nil {
			return nil, err
		}
		q.Lists = append(q.Lists, l)
		q.Depth += l.Depth
		q.Oldest = max(q.Oldest, l.Oldest)
		procs, err := processing(ctx, rc, name)
		if err != nil {
			return nil, err
		}
		q.Processing = append(q.Processing, procs...)
	}
	return q, nil
}

// listNames returns the request lists of queue, the queue first, each once:
// those of every shard count its servers recorded at their beats
// (registry.RecordShards), live or not, and of the live servers' counts.
func listNames(ctx context.Context, rc rueidis.Client, queue string, live []registry.Info) ([]string, error) {
	counts, err := registry.ShardCounts(ctx, rc, queue)
	if err != nil {
		return nil, err
	}
	for _, info := range live {
		counts = append(counts, info.Shards)
	}
	slices.Sort(counts)
	names := []string{queue}
	seen := map[string]bool{queue: true}
	for _, n := range slices.Compact(counts) {
		for _, name := range keys.Shards(queue, n) {
			if !seen[name] {
				seen[name] = true
				names = append(names, name)
			}
		}
	}
	return names, nil
}

// list reads the depth of a request list, and the age of its head.
func list(ctx context.Context, rc rueidis.Client, name string, now time.Time) (List, error) {
	res := rc.DoMulti(ctx, rc.B().Llen().Key(name).Build(), rc.B().Lindex().Key(name).Index(0).Build())
	l := List{Name: name}
	var err error
	if l.Depth, err = res[0].AsInt64(); err != nil {
		return l, err
	}
	head, err := res[1].ToString()
	if rueidis.IsRedisNil(err) {
		return l, nil
	}
	if err != nil {
		return l, err
	}
	if req, err := wire.DecodeRequest(head); err == nil && req.Sent > 0 {
		l.Oldest = max(now.Sub(time.UnixMilli(req.Sent)), 0)
	}
	return l, nil
}

// processing reads how many requests each server in list's lease set holds.
func processing(ctx context.Context, rc rueidis.Client, list string) ([]Processing, error) {
	leases, err := rc.Do(ctx, rc.B().Zrange().Key(keys.Leases(list)).Min("0").Max("-1").Withscores().Build()).AsZScores()
	if err != nil || len(leases) == 0 {
		return nil, err
	}
	tm, err := rc.Do(ctx, rc.B().Time().Build()).AsStrSlice()
	if err != nil {
		return nil, err
	}
	now := redisMillis(tm)
	cmds := make(rueidis.Commands, len(leases))
	for i, l := range leases {
		cmds[i] = rc.B().Llen().Key(keys.Processing(list, l.Member)).Build()
	}
	var out []Processing
	for i, r := range rc.DoMulti(ctx, cmds...) {
		n, err := r.AsInt64()
		if err != nil {
			return nil, err
		}
		if n > 0 {
			out = append(out, Processing{Server: leases[i].Member, List: list, Requests: n, Live: int64(leases[i].Score) > now})
		}
	}
	return out, nil
}

// redisMillis returns the reply of TIME in Unix milliseconds.
func redisMillis(tm []string) int64 {
	if len(tm) != 2 {
		return 0
	}
	s, _ := strconv.ParseInt(tm[0], 10, 64)
	us, _ := strconv.ParseInt(tm[1], 10, 64)
	return s*1000 + us/1000
}

// Total sums the counts of all q's functions into one, percentiles
// included.
func (q *Queue) Total() FunctionStats {
	t := FunctionStats{Errors: map[string]uint64{}, hist: new(stats.Snapshot)}
	for _, f := range q.Stats {
		t.Calls += f.Calls
		for code, n := range f.Errors {
			t.Errors[code] += n
		}
		if f.hist != nil {
			for i := range f.hist {
				t.hist[i] += f.hist[i]
			}
		}
	}
	t.P50, t.P90, t.P99 = t.hist.Quantile(0.5), t.hist.Quantile(0.9), t.hist.Quantile(0.99)
	return t
}
