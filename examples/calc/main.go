// Command calc is the redisrpc calculator: a service with an accumulator and
// the functions clr, add, sub, mul, div and val, as in the classic redisrpc
// README.
//
//	calc                                 serve and call it over an embedded Redis
//	                                     (or REDIS_URL when set), printing each step
//	calc serve [-queue calc]             serve on REDIS_URL until interrupted
//	calc call [-queue calc] [-classic]   run the sequence against a running server;
//	                                     exit 1 on any mismatch
//
// REDIS_URL defaults to redis://127.0.0.1:6379 for serve and call. -classic calls
// classic (Python, Ruby, PHP) servers, which do not echo request ids.
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

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/internal/localredis"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "calc:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	cmd := ""
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("calc "+cmd, flag.ContinueOnError)
	queue := fs.String("queue", "calc", "request queue (a Redis list)")
	classic := fs.Bool("classic", false, "call a classic server (no request ids)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch cmd {
	case "":
		return demo(ctx, *queue, out)
	case "serve":
		rc, err := connect()
		if err != nil {
			return err
		}
		defer rc.Close()
		fmt.Fprintf(out, "serving %q; interrupt to stop\n", *queue)
		return serve(ctx, rc, *queue)
	case "call":
		rc, err := connect()
		if err != nil {
			return err
		}
		defer rc.Close()
		var opts []redisrpc.ClientOption
		if *classic {
			opts = append(opts, redisrpc.WithClassicServer())
		}
		c := redisrpc.NewClient(rc, *queue, opts...)
		defer c.Close()
		return sequence(ctx, c, *classic, out)
	}
	return fmt.Errorf("unknown command %q; want serve or call", cmd)
}

// demo serves the calculator and calls it in one process.
func demo(ctx context.Context, queue string, out io.Writer) error {
	srv, err := localredis.Start(localredis.NoBinary)
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Fprintf(out, "redis: %s (%s)\n", srv.URL, srv.Kind)
	rc, err := srv.Client()
	if err != nil {
		return err
	}
	defer rc.Close()

	served := make(chan error, 1)
	mux := newMux(rc, queue)
	go func() { served <- mux.Serve(ctx) }()

	c := redisrpc.NewClient(rc, queue)
	defer c.Close()
	err = sequence(ctx, c, false, out)

	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if serr := mux.Shutdown(sctx); serr != nil && err == nil {
		err = serr
	}
	if serr := <-served; !errors.Is(serr, redisrpc.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

func connect() (rueidis.Client, error) {
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379"
	}
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	rc, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", url, err)
	}
	return rc, nil
}

// serve serves the calculator until ctx ends, then drains.
func serve(ctx context.Context, rc rueidis.Client, queue string) error {
	return newMux(rc, queue).ServeAndDrain(ctx, 10*time.Second)
}
