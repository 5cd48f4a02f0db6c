package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/redisrpc/redisrpc/internal/web"
)

func cmdWeb(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	addr := fs.String("addr", "127.0.0.1:8080", "where to serve the page; loopback by default. The page answers under localhost, IP addresses and this host")
	actions := fs.Bool("allow-actions", false, "let the page call functions, and requeue and purge dead letters")
	if _, err := e.parse(fs, args, 0, ""); err != nil {
		return err
	}
	rc, err := e.connect()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("-addr %s: %w", *addr, err)
	}
	// The page answers under loopback names, IP addresses, and -addr's host
	// where that is a name: not under a name another site points here.
	var hosts []string
	if host, _, err := net.SplitHostPort(*addr); err == nil && host != "" && net.ParseIP(host) == nil {
		hosts = append(hosts, host)
	}
	d := web.New(rc, *actions, slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), hosts...)
	srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 5 * time.Second}
	running := make(chan struct{})
	go func() {
		defer close(running)
		d.Run(ctx)
	}()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	note := "actions off (-allow-actions to call and to requeue)"
	if *actions {
		note = "actions on: the page can call functions and requeue or purge dead letters"
	}
	fmt.Fprintf(e.stderr, "redisrpc web: http://%s, %s; interrupt to stop\n", ln.Addr(), note)
	select {
	case err = <-served:
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = srv.Shutdown(sctx)
	}
	<-running
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
