package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/internal/registry"
)

// parseArgs turns command-line words into JSON values: each that is JSON
// as it is, any other as a string, except one that starts as an object or
// an array does: that is JSON mistyped.
func parseArgs(words []string) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, len(words))
	for i, w := range words {
		var v any
		err := json.Unmarshal([]byte(w), &v)
		switch {
		case err == nil:
			out[i] = json.RawMessage(w)
		case strings.HasPrefix(strings.TrimSpace(w), "{") || strings.HasPrefix(strings.TrimSpace(w), "["):
			return nil, usagef("ARG %d, %s, is not JSON: %v; quote it for the shell, as '{\"qty\":2}'", i+1, w, err)
		default:
			out[i], _ = json.Marshal(w)
		}
	}
	return out, nil
}

// metaFlag is -meta key=value, repeatable: metadata sent with each call.
type metaFlag map[string]string

func (m metaFlag) String() string { return "" }

func (m metaFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	m[k] = v
	return nil
}

// with returns ctx carrying m as the metadata of its calls.
func (m metaFlag) with(ctx context.Context) context.Context {
	if len(m) == 0 {
		return ctx
	}
	return redisrpc.WithOutgoingMeta(ctx, m)
}

// caller calls one function with fixed arguments.
type caller func(ctx context.Context) (json.RawMessage, error)

// newCaller checks args, or kwargs, a JSON object, where set, and returns
// what makes a caller of function with them, once connected.
func newCaller(function string, args []string, kwargs string) (func(*redisrpc.Client) caller, error) {
	if kwargs != "" {
		if len(args) > 0 {
			return nil, usagef("give ARGs or -kwargs, not both: a function takes positional or named arguments")
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal([]byte(kwargs), &obj); err != nil {
			return nil, usagef("-kwargs %q: want a JSON object, such as '{\"name\":\"Ann\"}': %v", kwargs, err)
		}
		e := redisrpc.NewEndpoint[json.RawMessage, json.RawMessage](function, redisrpc.WithNamedArgs())
		return func(c *redisrpc.Client) caller {
			return func(ctx context.Context) (json.RawMessage, error) {
				return redisrpc.Call(ctx, c, e, json.RawMessage(kwargs))
			}
		}, nil
	}
	values, err := parseArgs(args)
	if err != nil {
		return nil, err
	}
	e := redisrpc.NewEndpoint[[]json.RawMessage, json.RawMessage](function, redisrpc.WithPositionalArgs())
	return func(c *redisrpc.Client) caller {
		return func(ctx context.Context) (json.RawMessage, error) {
			return redisrpc.Call(ctx, c, e, values)
		}
	}, nil
}

// isStream reports whether a live server of queue serves function as a
// stream endpoint.
func isStream(ctx context.Context, rc rueidis.Client, queue, function string) bool {
	infos, err := registry.Live(ctx, rc, queue)
	if err != nil {
		return false // the call says what fails
	}
	for _, info := range infos {
		for _, f := range info.Functions {
			if f.Name == function && f.Stream {
				return true
			}
		}
	}
	return false
}

// makeStream returns a call of the stream function with args, or kwargs,
// checked already (newCaller), that hands each item to out.
func makeStream(function string, args []string, kwargs string) func(context.Context, *redisrpc.Client, func(json.RawMessage)) error {
	return func(ctx context.Context, c *redisrpc.Client, out func(json.RawMessage)) error {
		var items iter.Seq2[json.RawMessage, error]
		if kwargs != "" {
			s := redisrpc.NewStream[json.RawMessage, json.RawMessage](function, redisrpc.WithNamedArgs())
			items = redisrpc.CallStream(ctx, c, s, json.RawMessage(kwargs))
		} else {
			values, err := parseArgs(args)
			if err != nil {
				return err
			}
			s := redisrpc.NewStream[[]json.RawMessage, json.RawMessage](function, redisrpc.WithPositionalArgs())
			items = redisrpc.CallStream(ctx, c, s, values)
		}
		for item, err := range items {
			if err != nil {
				return err
			}
			out(item)
		}
		return nil
	}
}

func cmdCall(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the answer")
	kwargs := fs.String("kwargs", "", "named arguments, a JSON object, instead of ARGs")
	classic := fs.Bool("classic", false, "call a classic (Python, Ruby, PHP) server, which does not echo request ids")
	wait := fs.Bool("wait", false, "wait for a server to take the call even when none is registered")
	meta := metaFlag{}
	fs.Var(meta, "meta", "`key=value` metadata to send, as an interceptor reads it; repeatable")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: redisrpc call [flags] QUEUE FUNCTION [ARG ...]\n\nEach ARG is a JSON value; a bare word that is not JSON is a string.\nA stream endpoint's items print as JSON lines, as they come, within -timeout.")
		fs.PrintDefaults()
	}
	rest, err := e.parse(fs, args, 2, "QUEUE FUNCTION [ARG ...]")
	if err != nil {
		return err
	}
	queue, function := rest[0], rest[1]
	makeCall, err := newCaller(function, rest[2:], *kwargs)
	if err != nil {
		return err
	}
	rc, err := e.connect()
	if err != nil {
		return err
	}
	var opts []redisrpc.ClientOption
	if *classic {
		opts = append(opts, redisrpc.WithClassicServer())
	}
	if !*wait && !*classic {
		opts = append(opts, redisrpc.WithFailFast())
	}
	c := redisrpc.NewClient(rc, queue, opts...)
	defer c.Close()
	call := makeCall(c)
	ctx, cancel := context.WithTimeout(meta.with(ctx), *timeout)
	defer cancel()
	if !*classic && isStream(ctx, rc, queue, function) {
		// Its items as JSON lines, as they come.
		if err := makeStream(function, rest[2:], *kwargs)(ctx, c, func(item json.RawMessage) { fmt.Fprintln(e.stdout, string(item)) }); err != nil {
			return e.callFailed(queue, err, *timeout)
		}
		return nil
	}
	result, err := call(ctx)
	if err != nil {
		return e.callFailed(queue, err, *timeout)
	}
	fmt.Fprintln(e.stdout, string(result))
	return nil
}

// callFailed tells what failed and what to do.
func (e *env) callFailed(queue string, err error, timeout time.Duration) error {
	var rerr *redisrpc.Error
	switch {
	case errors.As(err, &rerr):
		code := rerr.Code
		if code == "" {
			code = "error"
		}
		fmt.Fprintf(e.stderr, "%s: %s\n", code, rerr.Message)
		if rerr.Details != nil {
			d, _ := json.Marshal(rerr.Details)
			fmt.Fprintf(e.stderr, "details: %s\n", d)
		}
		switch code {
		case redisrpc.CodeUnavailable:
			fmt.Fprintf(e.stderr, "start a server of %s, or pass -wait to wait for one\n", queue)
		case redisrpc.CodeNotFound:
			fmt.Fprintf(e.stderr, "redisrpc info %s lists its functions\n", queue)
		}
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintf(e.stderr, "no answer within %v; is a server of %s running? (redisrpc info %s; a longer -timeout)\n", timeout, queue, queue)
	default:
		fmt.Fprintln(e.stderr, err)
	}
	return errReported
}
