// Package contract finds where a client's types and its servers' differ: the
// members one side sends that the other does not read, or reads as another
// type. The servers' side is their schemas in the registry.
package contract

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redisrpc/redisrpc/internal/registry"
	"github.com/redisrpc/redisrpc/internal/schema"
)

// Published is the schemas the live servers publish, by function: one pair
// for each distinct pair published. A Published is not changed once made.
type Published struct {
	functions map[string][]*Pair
}

// Pair is a function's request and response schemas, as one server publishes
// them, parsed on first use.
type Pair struct {
	Request, Response json.RawMessage
	once              sync.Once
	req, resp         *schema.Schema
}

func (p *Pair) parsed() (req, resp *schema.Schema) {
	p.once.Do(func() {
		p.req, _ = schema.Parse(p.Request) // a schema that does not parse is not compared
		p.resp, _ = schema.Parse(p.Response)
	})
	return p.req, p.resp
}

// Read returns what infos publish; old itself where that is the same, so
// that checkers compare again only when it changes.
func Read(infos []registry.Info, old *Published) *Published {
	p := &Published{functions: map[string][]*Pair{}}
	for _, info := range infos {
		for _, f := range info.Functions {
			if f.RequestSchema == nil || f.ResponseSchema == nil {
				continue // an older server
			}
			pairs := p.functions[f.Name]
			if !slices.ContainsFunc(pairs, func(q *Pair) bool {
				return bytes.Equal(q.Request, f.RequestSchema) && bytes.Equal(q.Response, f.ResponseSchema)
			}) {
				p.functions[f.Name] = append(pairs, &Pair{Request: f.RequestSchema, Response: f.ResponseSchema})
			}
		}
	}
	if old != nil && old.equal(p) {
		return old
	}
	return p
}

func (p *Published) equal(q *Published) bool {
	if len(p.functions) != len(q.functions) {
		return false
	}
	for name, pairs := range p.functions {
		if !slices.EqualFunc(pairs, q.functions[name], func(a, b *Pair) bool {
			return bytes.Equal(a.Request, b.Request) && bytes.Equal(a.Response, b.Response)
		}) {
			return false
		}
	}
	return true
}

// Drift is how one function's two sides differ.
type Drift struct {
	Text string // "place_order: the client sends ..."; "" where they agree
	// Breaking is whether a difference loses data or reads zero values:
	// every one but a member the server sends that the client lacks.
	Breaking bool
}

// Between says how a client of function whose types have the schemas req
// and resp differs from a server publishing server; sender and reader name
// the two ("the client", "the server").
func Between(function string, req, resp *schema.Schema, server *Pair, client, srv string) Drift {
	return between(function, req, resp, false, server, client, srv)
}

// between is Between, where spread says the client sends the items of its
// request, an array, as the positional arguments of the call: one reaches a
// server whose request type is no array as the whole request.
func between(function string, req, resp *schema.Schema, spread bool, server *Pair, client, srv string) Drift {
	sreq, sresp := server.parsed()
	if spread && sreq != nil && req.Items != nil && !slices.Contains(sreq.Type, "array") {
		req = req.Items
	}
	var clauses []string
	breaking := false
	if sreq != nil {
		for _, d := range schema.Compare(req, sreq) {
			clauses = append(clauses, d.Text(client, srv, "request"))
			breaking = true
		}
	}
	if sresp != nil {
		for _, d := range schema.Compare(sresp, resp) {
			clauses = append(clauses, d.Text(srv, client, "response"))
			breaking = breaking || d.Kind != schema.Lacks
		}
	}
	if len(clauses) == 0 {
		return Drift{}
	}
	return Drift{Text: function + ": " + strings.Join(clauses, "; "), Breaking: breaking}
}

// Checker compares a client's endpoints with its servers, once per endpoint
// and each time what the servers publish changes, and logs each drift once.
// It is safe for concurrent use.
type Checker struct {
	Logger *slog.Logger
	Queue  string

	endpoints sync.Map // key → *endpoint
}

type key struct {
	name      string
	req, resp reflect.Type
	spread    bool
}

type endpoint struct {
	req, resp *schema.Schema
	last      atomic.Pointer[checked]
	mu        sync.Mutex
	logged    string // the drift last logged
}

type checked struct {
	published *Published
	drift     Drift
}

// Check returns how the endpoint function, of request and response types req
// and resp, differs from what published holds of it, logging the drift the
// first time it is seen. spread says the endpoint sends its request's items
// as positional arguments (WithPositionalArgs).
func (c *Checker) Check(function string, req, resp reflect.Type, spread bool, published *Published) Drift {
	if published == nil {
		return Drift{}
	}
	k := key{function, req, resp, spread}
	v, ok := c.endpoints.Load(k)
	if !ok {
		v, _ = c.endpoints.LoadOrStore(k, &endpoint{req: schema.Of(req), resp: schema.Of(resp)})
	}
	e := v.(*endpoint)
	if last := e.last.Load(); last != nil && last.published == published {
		return last.drift
	}
	var drift Drift
	var texts []string
	for _, pair := range published.functions[function] {
		d := between(function, e.req, e.resp, k.spread, pair, "the client", "the server")
		if d.Text != "" && !slices.Contains(texts, d.Text) {
			texts = append(texts, d.Text)
			drift.Breaking = drift.Breaking || d.Breaking
		}
	}
	drift.Text = strings.Join(texts, "; and with other servers: ")
	e.last.Store(&checked{published: published, drift: drift})
	e.mu.Lock()
	defer e.mu.Unlock()
	if drift.Text != "" && drift.Text != e.logged {
		c.Logger.Warn("redisrpc: the client's types and the server's differ", "queue", c.Queue, "function", function, "drift", drift.Text)
	}
	e.logged = drift.Text
	return drift
}
