// Package web is the dashboard of redisrpc web: one page, its assets
// embedded, that shows every service of a Redis live, and with actions
// allowed calls functions and requeues or purges dead letters.
package web

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/inspect"
	"github.com/redisrpc/redisrpc/internal/keys"
	"github.com/redisrpc/redisrpc/internal/schema"
)

//go:embed assets
var assets embed.FS

// readsAtOnce is how many queues a refresh reads at once, and maxNamed how
// many of those it could not read the page's error names.
const (
	readsAtOnce = 64
	maxNamed    = 3
)

// Refresh is how often the dashboard reads Redis, and History how many
// readings of rates and latencies it keeps for its charts.
const (
	Refresh = 500 * time.Millisecond
	History = 1200
)

// Server serves the dashboard. Make one with New, run Run in a goroutine of
// its own, and serve Handler.
type Server struct {
	rc      rueidis.Client
	actions bool
	log     *slog.Logger
	hosts   []string // names it answers under, besides loopback names and IP addresses

	rates map[string]*inspect.Rates // by queue; Run's goroutine alone uses it

	mu      sync.Mutex
	state   State
	history map[string][]Point // by queue
	clients map[string]*pageClient
	used    int64 // counts client uses, to find the least recently used
	stopped bool  // Run has returned and closed the clients
}

// Clients is how many queues' clients the page's calls keep, at most: one
// more closes the least recently used.
const Clients = 16

// pageClient is the client of a queue that the page's calls share.
type pageClient struct {
	c       *redisrpc.Client
	queue   string
	used    int64 // Server.used at its last use
	calls   int   // in flight
	evicted bool  // out of Server.clients: closed by its last call
}

// State is what the page shows, as JSON.
type State struct {
	Updated  int64     `json:"updated"`
	Error    string    `json:"error,omitempty"` // why Redis could not be read
	Actions  bool      `json:"actions"`
	Services []Service `json:"services"`
}

// Service is one queue and what serves it.
type Service struct {
	Queue      string               `json:"queue"`
	Depth      int64                `json:"depth"`
	OldestMS   int64                `json:"oldest_ms"`
	Rate       float64              `json:"rate"`       // calls/s between the servers' last two beats (inspect.Rates)
	ErrorRate  float64              `json:"error_rate"` // failed calls/s, likewise
	P99US      int64                `json:"p99_us"`     // of the calls between those beats
	Errors     map[string]uint64    `json:"errors"`     // since the servers started, by code
	Servers    []Node               `json:"servers"`
	Functions  []Function           `json:"functions"`
	Processing []inspect.Processing `json:"processing"`
	Dead       []Dead               `json:"dead"`
	History    []Point              `json:"history"`
}

// Node is a live server of a queue.
type Node struct {
	ID          string `json:"id"`
	Host        string `json:"host"`
	PID         int    `json:"pid"`
	UptimeS     int64  `json:"uptime_s"`
	Mode        string `json:"mode"`
	Concurrency int    `json:"concurrency"`
	Shards      int    `json:"shards"`
	Version     string `json:"version"`
	InFlight    int64  `json:"in_flight"`
}

// Function is a function served, with its counts since its servers started.
// RequestMembers and ResponseMembers describe the JSON of each side
// ({item: string, qty?: integer}); Example is a request the call form
// starts from; all three are empty where the servers publish no schema.
type Function struct {
	Name            string            `json:"name"`
	Request         string            `json:"request"`
	Response        string            `json:"response"`
	Stream          bool              `json:"stream,omitempty"` // a stream endpoint: Response is its items' type
	RequestMembers  string            `json:"request_members,omitempty"`
	ResponseMembers string            `json:"response_members,omitempty"`
	Example         json.RawMessage   `json:"example,omitempty"`
	Calls           uint64            `json:"calls"`
	Errors          map[string]uint64 `json:"errors"`
	P50US           int64             `json:"p50_us"`
	P99US           int64             `json:"p99_us"`
}

// Dead is a dead letter. Ref names it for /api/dead/requeue; Answered says
// its caller was told it failed (see inspect.DeadLetter).
type Dead struct {
	Ref        string `json:"ref"`
	List       string `json:"list"`
	At         int64  `json:"at"`
	Deliveries int    `json:"deliveries"`
	Function   string `json:"function"`
	ID         string `json:"id"`
	Answered   bool   `json:"answered"`
	Why        string `json:"why"`
	Request    string `json:"request"`
}

// Point is a queue's rate and latency at one refresh.
type Point struct {
	T     int64   `json:"t"`
	Rate  float64 `json:"rate"`
	P99US int64   `json:"p99_us"`
}

// New returns a dashboard of the services on rc. With actions, the page can
// call functions and requeue and purge dead letters.
//
// The dashboard answers only requests whose Host is a loopback name
// (localhost and *.localhost), an IP address, or one of hosts, so that
// another site cannot reach it through a name of its own that it points at
// this machine (DNS rebinding); others get 421. Actions must come from the
// page itself: one whose Origin is another gets 403. No page may frame it.
func New(rc rueidis.Client, actions bool, log *slog.Logger, hosts ...string) *Server {
	s := &Server{rc: rc, actions: actions, log: log, rates: map[string]*inspect.Rates{}, history: map[string][]Point{},
		clients: map[string]*pageClient{}, state: State{Actions: actions}}
	for _, h := range hosts {
		s.hosts = append(s.hosts, hostName(h))
	}
	return s
}

// Run reads Redis every Refresh until ctx ends, then closes the clients the
// page's calls made (one in a call as the call ends); calls after it fail.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTicker(Refresh)
	defer t.Stop()
	for {
		s.refresh(ctx)
		select {
		case <-ctx.Done():
			s.mu.Lock()
			s.stopped = true
			var idle []*pageClient
			for _, pc := range s.clients {
				if pc.evicted = true; pc.calls == 0 {
					idle = append(idle, pc)
				}
			}
			clear(s.clients)
			s.mu.Unlock()
			for _, pc := range idle { // the others close as their calls end
				pc.c.Close()
			}
			return
		case <-t.C:
		}
	}
}

// refresh reads every service, and keeps what the page shows.
func (s *Server) refresh(parent context.Context) {
	ctx, cancel := context.WithTimeout(parent, 5*Refresh)
	defer cancel()
	now := time.Now()
	state := State{Updated: now.UnixMilli(), Actions: s.actions}
	queues, err := s.rc.Do(ctx, s.rc.B().Zrange().Key(keys.Services).Min("0").Max("-1").Build()).AsStrSlice()
	if err != nil {
		if ctx.Err() == nil {
			s.mu.Lock()
			s.state.Error = err.Error()
			s.state.Updated = state.Updated
			s.mu.Unlock()
		}
		return
	}
	// The queues are read many at a time, whose commands rueidis pipelines,
	// those that beat last first: the index keeps a day of queues, hundreds
	// where tests make their own, and one by one they took longer than a
	// refresh may. Those not read in time are left out, and the error says so.
	slices.Reverse(queues)
	type read struct {
		q    *inspect.Queue
		dead []inspect.DeadLetter
		err  error
	}
	reads := make([]read, len(queues))
	sem := make(chan struct{}, readsAtOnce)
	var wg sync.WaitGroup
	for i, queue := range queues {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			r := &reads[i]
			if r.q, r.err = inspect.Inspect(ctx, s.rc, queue); r.err == nil {
				r.dead, r.err = inspect.DeadLetters(ctx, s.rc, queue)
			}
		})
	}
	wg.Wait()
	if parent.Err() != nil { // the dashboard stops: the page keeps what it showed
		return
	}
	var svcs []Service
	var failed []string
	listed := map[string]bool{}
	for i, r := range reads {
		if r.err != nil { // one queue's error hides no other queue
			failed = append(failed, "queue "+queues[i]+" cannot be read: "+r.err.Error())
			continue
		}
		one := s.service(r.q, r.dead)
		rt := s.rates[queues[i]]
		if rt == nil {
			rt = new(inspect.Rates)
			s.rates[queues[i]] = rt
		}
		listed[queues[i]] = true
		_, rate := rt.Update(r.q)
		one.Rate, one.ErrorRate, one.P99US = rate.Calls, rate.Errors, rate.P99.Microseconds()
		svcs = append(svcs, one)
	}
	if len(failed) > maxNamed {
		failed = append(failed[:maxNamed], fmt.Sprintf("and %d more", len(failed)-maxNamed))
	}
	state.Error = strings.Join(failed, "; ")
	if state.Error == "" {
		for queue := range s.rates {
			if !listed[queue] {
				delete(s.rates, queue)
			}
		}
	}
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].Queue < svcs[j].Queue })
	state.Services = svcs
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range state.Services {
		svc := &state.Services[i]
		h := append(s.history[svc.Queue], Point{T: state.Updated, Rate: svc.Rate, P99US: svc.P99US})
		if len(h) > History {
			h = h[len(h)-History:]
		}
		s.history[svc.Queue] = h
		svc.History = h
	}
	if state.Error == "" {
		for queue := range s.history {
			if !listed[queue] {
				delete(s.history, queue)
			}
		}
	}
	s.state = state
}

func (s *Server) service(q *inspect.Queue, dead []inspect.DeadLetter) Service {
	svc := Service{Queue: q.Name, Depth: q.Depth, OldestMS: q.Oldest.Milliseconds(), Errors: q.Total().Errors,
		Processing: q.Processing, Servers: []Node{}, Functions: []Function{}, Dead: []Dead{}}
	for _, srv := range q.Servers {
		up := int64(0)
		if !srv.Started.IsZero() {
			up = int64(time.Since(srv.Started).Seconds())
		}
		svc.Servers = append(svc.Servers, Node{ID: srv.ID, Host: srv.Host, PID: srv.PID, UptimeS: up, Mode: srv.Mode,
			Concurrency: srv.Concurrency, Shards: srv.Shards, Version: srv.Version, InFlight: srv.InFlight})
	}
	for _, f := range q.Functions {
		st := q.Stats[f.Name]
		fn := Function{Name: f.Name, Request: f.Request, Response: f.Response, Stream: f.Stream,
			Calls: st.Calls, Errors: st.Errors, P50US: st.P50.Microseconds(), P99US: st.P99.Microseconds()}
		if req, err := schema.Parse(f.RequestSchema); err == nil && f.RequestSchema != nil {
			fn.RequestMembers, fn.Example = schema.Describe(req), schema.Example(req)
		}
		if resp, err := schema.Parse(f.ResponseSchema); err == nil && f.ResponseSchema != nil {
			fn.ResponseMembers = schema.Describe(resp)
		}
		svc.Functions = append(svc.Functions, fn)
	}
	for _, d := range dead {
		svc.Dead = append(svc.Dead, Dead{Ref: d.Ref, List: d.List, At: d.At.UnixMilli(), Deliveries: d.Deliveries,
			Function: d.Function, ID: d.ID, Answered: d.Answered, Why: d.Why, Request: d.Request})
	}
	return svc
}

// Handler serves the page, its assets, and the API: GET /api/state, and
// with actions POST /api/call, /api/dead/requeue and /api/dead/purge. See
// New for the requests it refuses.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	mux.Handle("GET /", http.FileServerFS(static))
	mux.HandleFunc("GET /api/state", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		state := s.state
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, state)
	})
	mux.HandleFunc("POST /api/call", s.action(s.call))
	mux.HandleFunc("POST /api/dead/requeue", s.action(s.requeue))
	mux.HandleFunc("POST /api/dead/purge", s.action(s.purge))
	return s.guard(mux)
}

// policy is the Content-Security-Policy of every answer: the page's script,
// styles and requests come from its own files alone (no inline script or
// style), and no page may frame it.
const policy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// guard answers requests to a Host the dashboard listens under, and forbids
// framing and inline script in every answer.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", policy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if !s.knownHost(r.Host) {
			http.Error(w, "redisrpc web answers under localhost, IP addresses and the host of its -addr, not "+
				strconv.Quote(r.Host)+": open it under one of those, or start it with -addr "+hostName(r.Host)+":PORT", http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// hostName returns the name in a Host header or an address, lower case,
// without its port, brackets or final dot.
func hostName(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

// knownHost reports whether hostport names the dashboard: a loopback name,
// an IP address, or one of its hosts. A page of another site that reaches
// the dashboard by pointing a name of its own at this machine sends that
// name; an address cannot be repointed so.
func (s *Server) knownHost(hostport string) bool {
	host := hostName(hostport)
	return net.ParseIP(host) != nil || host == "localhost" || strings.HasSuffix(host, ".localhost") || slices.Contains(s.hosts, host)
}

// sameOrigin reports whether r comes from the dashboard's own page, as far
// as its browser says: an Origin, which browsers send with every POST of a
// script, must be the dashboard's; clients that send none pass.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && strings.EqualFold(u.Host, r.Host)
}

// action guards a POST: actions must be allowed, and the request must say it
// comes from the page (a header a cross-site form cannot set), in JSON.
func (s *Server) action(f func(ctx context.Context, body json.RawMessage) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch {
		case !s.actions:
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "actions are off: start redisrpc web with -allow-actions"})
			return
		case !sameOrigin(r):
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "an action must come from the dashboard's own page, not from " + r.Header.Get("Origin")})
			return
		case r.Header.Get("X-Redisrpc-Action") != "1" || r.Header.Get("Content-Type") != "application/json":
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "an action needs Content-Type application/json and X-Redisrpc-Action: 1"})
			return
		}
		var body json.RawMessage
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "the body is not JSON: " + err.Error()})
			return
		}
		out, err := f(r.Context(), body)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, out)
	}
}

// callResult is the outcome of a call from the page.
type callResult struct {
	OK      bool            `json:"ok"`
	Result  json.RawMessage `json:"result,omitempty"`
	Code    string          `json:"code,omitempty"`
	Message string          `json:"message,omitempty"`
	Details any             `json:"details,omitempty"`
}

func (s *Server) call(ctx context.Context, body json.RawMessage) (any, error) {
	var req struct {
		Queue    string            `json:"queue"`
		Function string            `json:"function"`
		Args     []json.RawMessage `json:"args"`
		Kwargs   json.RawMessage   `json:"kwargs"`
		Meta     map[string]string `json:"meta"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Queue == "" || req.Function == "" {
		return nil, errors.New(`want {"queue": ..., "function": ..., "args": [...]} or "kwargs": {...}, and "meta": {...} where it sends metadata`)
	}
	if _, empty := req.Meta[""]; empty {
		return nil, errors.New("metadata with an empty key")
	}
	pc, err := s.client(req.Queue)
	if err != nil {
		return nil, err
	}
	defer s.release(pc)
	c := pc.c
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if len(req.Meta) > 0 {
		ctx = redisrpc.WithOutgoingMeta(ctx, req.Meta)
	}
	var result json.RawMessage
	if len(req.Kwargs) > 0 && string(req.Kwargs) != "null" && string(req.Kwargs) != "{}" {
		if len(req.Args) > 0 {
			return nil, errors.New("give args or kwargs, not both")
		}
		result, err = redisrpc.Call(ctx, c, redisrpc.NewEndpoint[json.RawMessage, json.RawMessage](req.Function, redisrpc.WithNamedArgs()), req.Kwargs)
	} else {
		result, err = redisrpc.Call(ctx, c, redisrpc.NewEndpoint[[]json.RawMessage, json.RawMessage](req.Function, redisrpc.WithPositionalArgs()), req.Args)
	}
	if err != nil {
		out := callResult{Code: string(redisrpc.CodeOf(err)), Message: err.Error()}
		var rerr *redisrpc.Error
		if errors.As(err, &rerr) {
			out.Message, out.Details = rerr.Message, rerr.Details
		}
		return out, nil
	}
	return callResult{OK: true, Result: result}, nil
}

// client returns the page's client of queue, made at its first call, for
// one call: release it after. Only the services the page lists are called,
// and only Clients clients are kept: one more closes the least recently
// used, once its calls in flight have ended.
func (s *Server) client(queue string) (*pageClient, error) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil, errors.New("the dashboard is stopping")
	}
	if !slices.ContainsFunc(s.state.Services, func(svc Service) bool { return svc.Queue == queue }) {
		s.mu.Unlock()
		return nil, fmt.Errorf("%q is not a service the page lists: it calls those alone", queue)
	}
	var idle *pageClient // evicted, to close
	pc := s.clients[queue]
	if pc == nil {
		if len(s.clients) >= Clients {
			var lru *pageClient
			for _, c := range s.clients {
				if lru == nil || c.used < lru.used {
					lru = c
				}
			}
			delete(s.clients, lru.queue)
			if lru.evicted = true; lru.calls == 0 {
				idle = lru
			}
		}
		pc = &pageClient{c: redisrpc.NewClient(s.rc, queue, redisrpc.WithFailFast(), redisrpc.WithLogger(s.log)), queue: queue}
		s.clients[queue] = pc
	}
	s.used++
	pc.used = s.used
	pc.calls++
	s.mu.Unlock()
	if idle != nil {
		idle.c.Close()
	}
	return pc, nil
}

// release ends a call's use of pc, and closes pc where it is no longer
// kept and no call uses it.
func (s *Server) release(pc *pageClient) {
	s.mu.Lock()
	pc.calls--
	closing := pc.evicted && pc.calls == 0
	s.mu.Unlock()
	if closing {
		pc.c.Close()
	}
}

// requeueResult is the outcome of a requeue from the page, by Ref.
type requeueResult struct {
	Requeued int      `json:"requeued"`
	Gone     []string `json:"gone"`    // requeued or purged since they were read
	Refused  []string `json:"refused"` // their callers were told they failed, and force was not given
}

// requeue requeues the dead letters the page names by Ref: those it showed,
// and no other that took their place since. Those whose callers were told
// they failed need force, which the page sends once the person confirmed.
func (s *Server) requeue(ctx context.Context, body json.RawMessage) (any, error) {
	var req struct {
		Queue string   `json:"queue"`
		Refs  []string `json:"refs"`
		Force bool     `json:"force"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Queue == "" || len(req.Refs) == 0 {
		return nil, errors.New(`want {"queue": ..., "refs": [...], "force": false}, the refs as /api/state shows them; ` +
			`force requeues those whose callers were told they failed, too`)
	}
	dead, err := inspect.DeadLetters(ctx, s.rc, req.Queue)
	if err != nil {
		return nil, err
	}
	byRef := map[string]inspect.DeadLetter{}
	for _, d := range dead {
		byRef[d.Ref] = d
	}
	var opts []inspect.RequeueOption
	if req.Force {
		opts = append(opts, inspect.WithAnswered())
	}
	out := requeueResult{Gone: []string{}, Refused: []string{}}
	for _, ref := range req.Refs {
		d, ok := byRef[ref]
		if !ok {
			out.Gone = append(out.Gone, ref)
			continue
		}
		switch err := inspect.Requeue(ctx, s.rc, d, opts...); {
		case errors.Is(err, inspect.ErrAnswered), errors.Is(err, inspect.ErrKept):
			out.Refused = append(out.Refused, ref)
		case errors.Is(err, inspect.ErrGone):
			out.Gone = append(out.Gone, ref)
		case err != nil:
			return nil, err
		default:
			out.Requeued++
		}
	}
	return out, nil
}

func (s *Server) purge(ctx context.Context, body json.RawMessage) (any, error) {
	var req struct {
		Queue string `json:"queue"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Queue == "" {
		return nil, errors.New(`want {"queue": ...}`)
	}
	n, err := inspect.Purge(ctx, s.rc, req.Queue)
	return map[string]int64{"purged": n}, err
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
