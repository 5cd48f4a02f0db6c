// Package contract finds where a client's types and its servers' differ: the
// members one side sends that the other does not read, or reads as another
// type. The servers' side is their schemas in the registry.
package contract

import (
	"bytes"
	"cmp"
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
	// Servers come in the order of their leases, which changes at each beat:
	// the pairs are kept in an order of their own.
	for _, pairs := range p.functions {
		slices.SortFunc(pairs, func(a, b *Pair) int {
			return cmp.Or(bytes.Compare(a.Request, b.Request), bytes.Compare(a.Response, b.Response))
		})
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

// Layout is how a client lays out its request in a call (redisrpc's
// endpoint options), which decides what a server decodes: see the
// package redisrpc's table of arguments.
type Layout uint8

const (
	One    Layout = iota // one positional argument: the request
	None                 // no arguments: the request is an empty struct
	Named                // named arguments: the request's members
	Spread               // positional arguments: the request's items
)

// Between says how a client of function whose types have the schemas req
// and resp, sending its request as one value, differs from a server
// publishing server; client and srv name the two ("the client", "the
// server").
func Between(function string, req, resp *schema.Schema, server *Pair, client, srv string) Drift {
	return between(function, req, resp, One, server, client, srv)
}

// sent returns the schema of what a server decodes into its request type,
// of schema reader, from a client's request of schema req laid out as
// layout, following the fallbacks of its decoding; nil where it decodes
// nothing.
func sent(req, reader *schema.Schema, layout Layout) *schema.Schema {
	want := func(typ string) bool { return schema.Accepts(reader, typ) }
	switch layout {
	case None:
		if !want("object") {
			return nil // no arguments: a zero value, as a slice or a number reads them
		}
		return &schema.Schema{Type: schema.Types{"object"}, Properties: map[string]*schema.Schema{}}
	case Spread:
		// Several arguments arrive as the array; one alone as itself, into
		// a type that is no array.
		if items := schema.Sub(req, req).Items; items != nil && !want("array") {
			return schema.Sub(req, items)
		}
	case Named:
		// Named arguments with one member read into a type that is no
		// object as that member's value.
		if r := schema.Sub(req, req); !want("object") && len(r.Properties) == 1 {
			for _, p := range r.Properties {
				return schema.Sub(req, p)
			}
		}
	case One:
		// One argument that does not fit a slice reads as the list of
		// arguments: [x] into []T.
		if r := schema.Sub(req, req); want("array") && !schema.Accepts(r, "array") && len(r.Type) > 0 {
			return &schema.Schema{Type: schema.Types{"array"}, Items: r, Defs: r.Defs}
		}
	}
	return req
}

// between is Between, for a request laid out as layout.
func between(function string, req, resp *schema.Schema, layout Layout, server *Pair, client, srv string) Drift {
	sreq, sresp := server.parsed()
	var clauses []string
	breaking := false
	if sreq != nil {
		req := sent(req, sreq, layout)
		for _, d := range schema.CompareOrNone(req, sreq) {
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

// maxLogged bounds the drifts an endpoint remembers having logged.
const maxLogged = 64

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
	layout    Layout
}

type endpoint struct {
	req, resp *schema.Schema
	last      atomic.Pointer[checked]
	mu        sync.Mutex
	logged    map[string]bool // the drifts logged
}

type checked struct {
	published *Published
	drift     Drift
}

// Check returns how the endpoint function, of request and response types req
// and resp, differs from what published holds of it, logging the drift the
// first time it is seen. layout is how the endpoint lays out its request.
func (c *Checker) Check(function string, req, resp reflect.Type, layout Layout, published *Published) Drift {
	if published == nil {
		return Drift{}
	}
	k := key{function, req, resp, layout}
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
		d := between(function, e.req, e.resp, k.layout, pair, "the client", "the server")
		if d.Text != "" && !slices.Contains(texts, d.Text) {
			texts = append(texts, d.Text)
			drift.Breaking = drift.Breaking || d.Breaking
		}
	}
	drift.Text = strings.Join(texts, "; and with other servers: ")
	e.last.Store(&checked{published: published, drift: drift})
	e.mu.Lock()
	defer e.mu.Unlock()
	if drift.Text != "" && !e.logged[drift.Text] {
		c.Logger.Warn("redisrpc: the client's types and the server's differ", "queue", c.Queue, "function", function, "drift", drift.Text)
		if e.logged == nil || len(e.logged) >= maxLogged {
			e.logged = map[string]bool{}
		}
		e.logged[drift.Text] = true
	}
	return drift
}
