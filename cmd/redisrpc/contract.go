package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"

	"github.com/redisrpc/redisrpc/inspect"
	"github.com/redisrpc/redisrpc/internal/contract"
	"github.com/redisrpc/redisrpc/internal/schema"
)

// contractFile is what schema prints and check reads: each function's
// request and response as JSON Schema.
type contractFile struct {
	Queue     string                   `json:"queue"`
	Functions map[string]contractPairs `json:"functions"`
}

type contractPairs struct {
	Request  json.RawMessage `json:"request"`
	Response json.RawMessage `json:"response"` // of each item, for a stream
	Stream   bool            `json:"stream,omitempty"`
}

// published returns the schemas of each function the live servers of q
// publish, one pair per distinct pair, and the functions served by servers
// that publish none (older ones).
func published(q *inspect.Queue) (map[string][]contractPairs, []string) {
	out := map[string][]contractPairs{}
	var bare []string
	for _, s := range q.Servers {
		for _, f := range s.Functions {
			if f.RequestSchema == nil || f.ResponseSchema == nil {
				if !slices.Contains(bare, f.Name) {
					bare = append(bare, f.Name)
				}
				continue
			}
			p := contractPairs{f.RequestSchema, f.ResponseSchema, f.Stream}
			if !slices.ContainsFunc(out[f.Name], func(o contractPairs) bool {
				return bytes.Equal(o.Request, p.Request) && bytes.Equal(o.Response, p.Response) && o.Stream == p.Stream
			}) {
				out[f.Name] = append(out[f.Name], p)
			}
		}
	}
	return out, bare
}

// live reads queue and fails where no server is live.
func (e *env) live(ctx context.Context, queue string) (*inspect.Queue, error) {
	rc, err := e.connect()
	if err != nil {
		return nil, err
	}
	q, err := inspect.Inspect(ctx, rc, queue)
	if err != nil {
		return nil, fmt.Errorf("reading the registry: %w", err)
	}
	if len(q.Servers) == 0 {
		return nil, fmt.Errorf("no live server of %s: start one, or check the queue's name (redisrpc ls)", queue)
	}
	return q, nil
}

func cmdSchema(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: redisrpc schema QUEUE [FUNCTION] > api.json\n\nPrints the JSON Schemas the live servers publish for each function's request and response.")
		fs.PrintDefaults()
	}
	rest, err := e.parse(fs, args, 1, "QUEUE [FUNCTION]")
	if err != nil {
		return err
	}
	q, err := e.live(ctx, rest[0])
	if err != nil {
		return err
	}
	pub, bare := published(q)
	out := contractFile{Queue: q.Name, Functions: map[string]contractPairs{}}
	for name, pairs := range pub {
		if len(rest) > 1 && name != rest[1] {
			continue
		}
		if len(pairs) > 1 {
			fmt.Fprintf(e.stderr, "the live servers of %s publish %d contracts for %s: printed one; redisrpc check tells how they differ\n", q.Name, len(pairs), name)
		}
		out.Functions[name] = pairs[0]
	}
	for _, name := range bare {
		if _, ok := out.Functions[name]; !ok && (len(rest) == 1 || name == rest[1]) {
			fmt.Fprintf(e.stderr, "%s: its servers publish no schema (an older redisrpc)\n", name)
		}
	}
	if len(rest) > 1 && len(out.Functions) == 0 {
		return fmt.Errorf("no live server of %s publishes a schema for %s; redisrpc info %s lists its functions", q.Name, rest[1], q.Name)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, string(b))
	return nil
}

func cmdCheck(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: redisrpc check QUEUE FILE\n\nCompares the live servers with the contract in FILE, as redisrpc schema saved it (- reads stdin).\nExits 1 where they break it.")
		fs.PrintDefaults()
	}
	rest, err := e.parse(fs, args, 2, "QUEUE FILE")
	if err != nil {
		return err
	}
	var saved contractFile
	if err := readContract(rest[1], &saved); err != nil {
		return err
	}
	q, err := e.live(ctx, rest[0])
	if err != nil {
		return err
	}
	pub, bare := published(q)
	broken := map[string]bool{}
	notes := 0
	for _, name := range slices.Sorted(maps.Keys(saved.Functions)) {
		want := saved.Functions[name]
		req, err1 := schema.Parse(want.Request)
		resp, err2 := schema.Parse(want.Response)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("%s: %s holds no JSON Schema of its request and response", rest[1], name)
		}
		pairs, ok := pub[name]
		if !ok {
			broken[name] = true
			if slices.Contains(bare, name) {
				fmt.Fprintf(e.stdout, "%s: its servers publish no schema (an older redisrpc): it cannot be checked\n", name)
			} else {
				fmt.Fprintf(e.stdout, "%s: no live server serves it\n", name)
			}
			continue
		}
		for _, p := range pairs {
			if p.Stream != want.Stream {
				broken[name] = true
				kind := map[bool]string{true: "a stream endpoint", false: "a function that answers once"}
				fmt.Fprintf(e.stdout, "%s: the server serves %s, the client calls %s\n", name, kind[p.Stream], kind[want.Stream])
				continue
			}
			d := contract.Between(name, req, resp, &contract.Pair{Request: p.Request, Response: p.Response}, "the client", "the server")
			switch {
			case d.Text == "":
			case d.Breaking:
				broken[name] = true
				fmt.Fprintln(e.stdout, d.Text)
			default:
				notes++
				fmt.Fprintln(e.stdout, d.Text+" (compatible)")
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(pub)) {
		if _, ok := saved.Functions[name]; !ok {
			fmt.Fprintf(e.stdout, "%s: served, and not in %s (compatible)\n", name, rest[1])
			notes++
		}
	}
	if len(broken) > 0 {
		fmt.Fprintf(e.stderr, "the live servers of %s break the contract in %s, in %d of its %d functions (\"the client\" is the contract)\n",
			q.Name, rest[1], len(broken), len(saved.Functions))
		return errReported
	}
	fmt.Fprintf(e.stderr, "the live servers of %s keep the contract in %s (%s", q.Name, rest[1], plural(len(saved.Functions), "function"))
	if notes > 0 {
		fmt.Fprintf(e.stderr, "; %s", plural(notes, "compatible change"))
	}
	fmt.Fprintln(e.stderr, ")")
	return nil
}

// plural says n things: 1 function, 2 functions.
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// readContract reads a file schema wrote, or stdin for "-".
func readContract(name string, into *contractFile) error {
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, into); err != nil || into.Functions == nil {
		return usagef("%s is not a contract redisrpc schema wrote: want {\"queue\": ..., \"functions\": {...}}", name)
	}
	return nil
}
