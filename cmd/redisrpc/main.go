// Command redisrpc calls, lists, inspects and measures redisrpc services.
//
//	redisrpc call [-timeout D] [-kwargs JSON] [-meta K=V ...] [-classic] [-wait] QUEUE FUNCTION [ARG ...]
//	redisrpc ls
//	redisrpc info QUEUE
//	redisrpc schema QUEUE [FUNCTION]
//	redisrpc check QUEUE FILE
//	redisrpc stats [-watch] [-interval D] QUEUE
//	redisrpc bench [-c N] [-d D] [-kwargs JSON] [-meta K=V ...] QUEUE FUNCTION [ARG ...]
//	redisrpc dead [-requeue all|REF[,REF...]] [-force] [-purge] QUEUE
//	redisrpc web [-addr 127.0.0.1:8080] [-allow-actions]
//
// Every command takes -url, the Redis to talk to: REDIS_URL by default, else
// redis://127.0.0.1:6379; a Redis Cluster is found from any of its nodes. A
// command exits 0 when it did what it was asked, 1 when it failed, saying
// why and what to do, and 2 when it was asked wrongly; help and -h exit 0.
// Flags may come before, between or after the other arguments.
//
// call prints the function's return value as JSON on stdout. Each ARG is a
// JSON value; a bare word that is not JSON is a string (add 5, greet Ann),
// but one that starts with { or [ and is not JSON is an error. -meta
// key=value, repeatable, sends metadata with the call, as
// redisrpc.WithOutgoingMeta does: a token for a server's interceptor. A
// stream endpoint's items print as JSON lines, one an item, as they come. A
// failure of the remote side prints "code: message" and its details on
// stderr. It fails at once with unavailable when no live server of the
// queue is registered, unless -wait, or -classic (classic servers do not
// register).
//
// info lists a queue's servers and its functions, each with the members of
// its request and response and their JSON types. schema prints the
// contract of a queue's live servers, or of one function: each function's
// request and response as JSON Schema (draft 2020-12), which servers
// publish in the registry. Kept in a file, check compares the live servers
// with it: it prints each difference as a client's drift warning says it,
// the file playing the client, and exits 1 where one breaks the contract (a
// member the servers' response adds breaks nothing; neither does a function
// they add).
//
// dead lists a queue's dead letters, each with a REF that names it and no
// other. -requeue REF acts on that one alone, or says it is gone. A dead
// letter whose caller was told it failed (internal) when it became one is
// listed as "told it failed": the caller may have undone its work, and
// -requeue refuses it, saying why, unless -force.
//
// web serves the dashboard. It answers only under localhost, IP addresses
// and -addr's host, not under a name another site points at this machine
// (DNS rebinding); no other site may frame it; its actions, off without
// -allow-actions, must come from its own page.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/redis/rueidis"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError is a command asked wrongly: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

const usage = `usage: redisrpc COMMAND [-url URL] [flags] ...

  call [-timeout D] [-kwargs JSON] [-meta K=V ...] [-classic] [-wait] QUEUE FUNCTION [ARG ...]
                                   call a function and print its return value
  ls                               list services: live servers, functions, queue depth
  info QUEUE                       a service's servers, functions and their members
  schema QUEUE [FUNCTION]          the live servers' contract, as JSON Schema
  check QUEUE FILE                 compare the live servers with a contract saved by schema
  stats [-watch] QUEUE             calls, errors and latency by function
  bench [-c N] [-d D] [-meta K=V ...] QUEUE FUNCTION [ARG ...]
                                   calls/s and latency against a live service
  dead [-requeue all|REF,...] [-force] [-purge] QUEUE
                                   dead letters: list, requeue, purge
  web [-addr 127.0.0.1:8080] [-allow-actions]
                                   a live dashboard of every service, in the browser

-url defaults to $REDIS_URL, else redis://127.0.0.1:6379. Flags may follow
the arguments. redisrpc help COMMAND shows a command's flags.`

// run runs the command in args and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		if len(args) > 1 && args[0] == "help" { // help COMMAND: its flags
			return run(ctx, []string{args[1], "-h"}, stdout, stderr)
		}
		fmt.Fprintln(stdout, usage)
		return 0
	}
	cmd, args := args[0], args[1:]
	commands := map[string]func(context.Context, *env, []string) error{
		"call": cmdCall, "ls": cmdLs, "info": cmdInfo, "stats": cmdStats, "bench": cmdBench, "dead": cmdDead, "web": cmdWeb,
		"schema": cmdSchema, "check": cmdCheck,
	}
	f, ok := commands[cmd]
	if !ok {
		fmt.Fprintf(stderr, "redisrpc: unknown command %q\n%s\n", cmd, usage)
		return 2
	}
	e := &env{stdout: stdout, stderr: stderr, name: cmd}
	err := f(ctx, e, args)
	if e.rc != nil {
		e.rc.Close()
	}
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "redisrpc %s: %v\n", cmd, err)
		return 2
	case errors.Is(err, errReported):
		return 1
	}
	fmt.Fprintf(stderr, "redisrpc %s: %v\n", cmd, err)
	return 1
}

// errReported is a failure the command has told the user about already.
var errReported = errors.New("reported")

// env is what a command runs with.
type env struct {
	stdout, stderr io.Writer
	name           string
	url            string
	rc             rueidis.Client
}

// flags returns the flag set of the command, with -url.
func (e *env) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("redisrpc "+e.name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	def := os.Getenv("REDIS_URL")
	if def == "" {
		def = "redis://127.0.0.1:6379"
	}
	fs.StringVar(&e.url, "url", def, "Redis URL (redis://, rediss://, unix://); any node of a cluster")
	return fs
}

// parse parses args with fs, flags before, between or after the positional
// arguments, and wants n positional arguments at least. A word that is a
// negative number (-5, -0.5) is an argument, not a flag; after "--" every
// word is one.
func (e *env) parse(fs *flag.FlagSet, args []string, n int, names string) ([]string, error) {
	var rest []string
	for len(args) > 0 {
		w := args[0]
		switch {
		case w == "--":
			rest = append(rest, args[1:]...)
			args = nil
			continue
		case !strings.HasPrefix(w, "-") || w == "-" || isNumber(w):
			rest = append(rest, w)
			args = args[1:]
			continue
		}
		// One flag at a time, with its value where it takes one.
		take := 1
		name, _, hasValue := strings.Cut(strings.TrimLeft(w, "-"), "=")
		if f := fs.Lookup(name); f != nil && !hasValue && !isBool(f) && len(args) > 1 {
			take = 2
		}
		if err := fs.Parse(args[:take]); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &usageError{err.Error()} // told, with the usage, by fs
		}
		args = args[take:]
	}
	if len(rest) < n {
		return nil, usagef("want %s; see redisrpc %s -h", names, e.name)
	}
	return rest, nil
}

// isNumber reports whether w is a JSON number, however large.
func isNumber(w string) bool {
	var n json.Number
	return json.Valid([]byte(w)) && json.Unmarshal([]byte(w), &n) == nil
}

// isBool reports whether f is a flag that takes no value.
func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// connect connects to e.url.
func (e *env) connect() (rueidis.Client, error) {
	opt, err := rueidis.ParseURL(e.url)
	if err != nil {
		return nil, usagef("-url %q: %v", e.url, err)
	}
	opt.DisableCache = true // nothing here is cached; no ACL needs client|tracking
	opt.ConnWriteTimeout = 5 * time.Second
	rc, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("cannot reach Redis at %s: %w; is it running? set -url or REDIS_URL", e.url, err)
	}
	e.rc = rc
	return rc, nil
}
