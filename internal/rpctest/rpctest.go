// Package rpctest holds what the tests of redisrpc share.
package rpctest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc"
)

// Serve serves mux until the test ends, then shuts it down and checks that
// Shutdown returned nil and Serve ErrServerClosed.
func Serve(t testing.TB, mux *redisrpc.Mux) {
	t.Helper()
	served := make(chan error, 1)
	go func() { served <- mux.Serve(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := mux.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: got %v, want nil", err)
		}
		if err := <-served; !errors.Is(err, redisrpc.ErrServerClosed) {
			t.Errorf("Serve: got %v, want ErrServerClosed", err)
		}
	})
}
