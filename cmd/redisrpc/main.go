// Command redisrpc calls, lists, inspects and measures redisrpc services.
//
//	redisrpc call [-timeout D] [-kwargs JSON] [-classic] [-wait] QUEUE FUNCTION [ARG ...]
//	redisrpc ls
//	redisrpc info QUEUE
//	redisrpc stats [-watch] [-interval D] QUEUE
//	redisrpc bench [-c N] [-d D] [-kwargs JSON] QUEUE FUNCTION [ARG ...]
//	redisrpc dead [-requeue all|REF[,REF...]] [-force] [-purge] QUEUE
//	redisrpc web [-addr 127.0.0.1:8080] [-allow-actions]
//
// Every command takes -url, the Redis to talk to: REDIS_URL by default, else
// redis://127.0.0.1:6379; a Redis Cluster is found from any of its nodes. A
// command exits 0 when it did what it was asked, 1 when it failed, saying
// why and what to do, and 2 when it was asked wrongly.
//
// call prints the function's return value as JSON on stdout. Each ARG is a
// JSON value; a bare word that is not JSON is a string (add 5, greet Ann). A
// failure of the remote side prints "code: message" and its details on
// stderr. It fails at once with unavailable when no live server of the
// queue is registered, unless -wait, or -classic (classic servers do not
// register).
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
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
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

  call [-timeout D] [-kwargs JSON] [-classic] [-wait] QUEUE FUNCTION [ARG ...]
                                   call a function and print its return value
  ls                               list services: live servers, functions, queue depth
  info QUEUE                       a service's servers and functions
  stats [-watch] QUEUE             calls, errors and latency by function
  bench [-c N] [-d D] QUEUE FUNCTION [ARG ...]
                                   calls/s and latency against a live service
  dead [-requeue all|REF,...] [-force] [-purge] QUEUE
                                   dead letters: list, requeue, purge
  web [-addr 127.0.0.1:8080] [-allow-actions]
                                   a live dashboard of every service, in the browser

-url defaults to $REDIS_URL, else redis://127.0.0.1:6379.`

// run runs the command in args and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "help" || args[0] == "--help" {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	commands := map[string]func(context.Context, *env, []string) error{
		"call": cmdCall, "ls": cmdLs, "info": cmdInfo, "stats": cmdStats, "bench": cmdBench, "dead": cmdDead, "web": cmdWeb,
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
		return 2
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

// parse parses args with fs, and wants n positional arguments at least.
func (e *env) parse(fs *flag.FlagSet, args []string, n int, names string) ([]string, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() < n {
		return nil, usagef("want %s; see redisrpc %s -h", names, e.name)
	}
	return fs.Args(), nil
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
