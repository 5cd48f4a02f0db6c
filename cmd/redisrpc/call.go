package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redisrpc/redisrpc"
)

// parseArgs turns command-line words into JSON values: each that is JSON
// as it is, any other as a string.
func parseArgs(words []string) []json.RawMessage {
	out := make([]json.RawMessage, len(words))
	for i, w := range words {
		if json.Valid([]byte(w)) {
			out[i] = json.RawMessage(w)
		} else {
			out[i], _ = json.Marshal(w)
		}
	}
	return out
}

// caller calls one function with fixed arguments.
type caller func(ctx context.Context) (json.RawMessage, error)

// newCaller returns a caller of function with args, or with kwargs, a JSON
// object, where set.
func newCaller(c *redisrpc.Client, function string, args []string, kwargs string) (caller, error) {
	if kwargs != "" {
		if len(args) > 0 {
			return nil, usagef("give ARGs or -kwargs, not both: a function takes positional or named arguments")
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal([]byte(kwargs), &obj); err != nil {
			return nil, usagef("-kwargs %q: want a JSON object, such as '{\"name\":\"Ann\"}': %v", kwargs, err)
		}
		e := redisrpc.NewEndpoint[json.RawMessage, json.RawMessage](function, redisrpc.WithNamedArgs())
		return func(ctx context.Context) (json.RawMessage, error) {
			return redisrpc.Call(ctx, c, e, json.RawMessage(kwargs))
		}, nil
	}
	values := parseArgs(args)
	e := redisrpc.NewEndpoint[[]json.RawMessage, json.RawMessage](function, redisrpc.WithPositionalArgs())
	return func(ctx context.Context) (json.RawMessage, error) {
		return redisrpc.Call(ctx, c, e, values)
	}, nil
}

func cmdCall(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the answer")
	kwargs := fs.String("kwargs", "", "named arguments, a JSON object, instead of ARGs")
	classic := fs.Bool("classic", false, "call a classic (Python, Ruby, PHP) server, which does not echo request ids")
	wait := fs.Bool("wait", false, "wait for a server to take the call even when none is registered")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: redisrpc call [flags] QUEUE FUNCTION [ARG ...]\n\nEach ARG is a JSON value; a bare word that is not JSON is a string.")
		fs.PrintDefaults()
	}
	rest, err := e.parse(fs, args, 2, "QUEUE FUNCTION [ARG ...]")
	if err != nil {
		return err
	}
	rc, err := e.connect()
	if err != nil {
		return err
	}
	queue, function := rest[0], rest[1]
	var opts []redisrpc.ClientOption
	if *classic {
		opts = append(opts, redisrpc.WithClassicServer())
	}
	if !*wait && !*classic {
		opts = append(opts, redisrpc.WithFailFast())
	}
	c := redisrpc.NewClient(rc, queue, opts...)
	defer c.Close()
	call, err := newCaller(c, function, rest[2:], *kwargs)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
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
