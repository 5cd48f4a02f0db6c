// Package localredis finds a Redis for tests and examples: the one REDIS_URL
// names, else a redis-server from PATH started on a free loopback port, else an
// embedded in-process server (miniredis).
package localredis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/rueidis"
)

// Server is a Redis to talk to.
type Server struct {
	URL      string
	Kind     string // "REDIS_URL", "redis-server" or "embedded"
	Embedded bool   // miniredis: no BLMPOP, no client tracking
	stop     func()
}

// Mode says which servers Start may use.
type Mode int

const (
	// Any tries REDIS_URL, then redis-server from PATH, then the embedded server.
	Any Mode = iota
	// NoBinary tries REDIS_URL, then the embedded server.
	NoBinary
	// Embedded is the embedded server alone: one of the caller's own.
	Embedded
)

// Start returns a running server chosen as mode says. Close stops what it started.
func Start(mode Mode) (*Server, error) {
	if mode == Embedded {
		return StartEmbedded()
	}
	if u := os.Getenv("REDIS_URL"); u != "" {
		return &Server{URL: u, Kind: "REDIS_URL", stop: func() {}}, nil
	}
	if mode == Any {
		if path, err := exec.LookPath("redis-server"); err == nil {
			return startBinary(path)
		}
	}
	return StartEmbedded()
}

// StartEmbedded starts an in-process server (miniredis) on a loopback port,
// whose TTLs run on the wall clock, as Redis's do.
func StartEmbedded() (*Server, error) {
	mr, err := miniredis.Run()
	if err != nil {
		return nil, fmt.Errorf("starting the embedded redis: %w", err)
	}
	mr.ClockTTL(true)
	return &Server{URL: "redis://" + mr.Addr(), Kind: "embedded", Embedded: true, stop: mr.Close}, nil
}

func startBinary(path string) (*Server, error) {
	var lastErr error
	for range 3 { // a free port may be taken before redis-server binds it
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning")
		cmd.SysProcAttr = dieWithParent()
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("starting redis-server: %w", err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		s := &Server{URL: fmt.Sprintf("redis://127.0.0.1:%d", port), Kind: "redis-server", stop: func() {
			cmd.Process.Kill()
			<-done
		}}
		if lastErr = s.waitReady(done); lastErr == nil {
			return s, nil
		}
		s.stop()
	}
	return nil, fmt.Errorf("starting redis-server: %w", lastErr)
}

func (s *Server) waitReady(exited <-chan struct{}) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("redis-server exited")
		default:
		}
		if c, err := s.Client(); err == nil {
			err = c.Do(context.Background(), c.B().Ping().Build()).Error()
			c.Close()
			if err == nil {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("redis-server did not answer PING within 10s")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Options returns rueidis options for s, with what the embedded server needs.
func (s *Server) Options() (rueidis.ClientOption, error) {
	opt, err := rueidis.ParseURL(s.URL)
	if err != nil {
		return opt, err
	}
	if s.Embedded {
		opt.DisableCache = true
		opt.ForceSingleClient = true
	}
	return opt, nil
}

// Client returns a new rueidis client for s; the caller closes it.
func (s *Server) Client() (rueidis.Client, error) {
	opt, err := s.Options()
	if err != nil {
		return nil, err
	}
	return rueidis.NewClient(opt)
}

// StartWithClient starts a server as Start does and returns a client of it;
// close the client before the server.
func StartWithClient(mode Mode) (*Server, rueidis.Client, error) {
	srv, err := Start(mode)
	if err != nil {
		return nil, nil, fmt.Errorf("redis: %w", err)
	}
	c, err := srv.Client()
	if err != nil {
		srv.Close()
		return nil, nil, fmt.Errorf("redis client of %s: %w", srv.URL, err)
	}
	return srv, c, nil
}

// Close stops the server if Start started it.
func (s *Server) Close() { s.stop() }
