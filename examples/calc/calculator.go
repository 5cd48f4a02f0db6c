package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc"
)

// The calculator's functions. None takes no arguments; the others take a number.
var (
	Clr = redisrpc.NewEndpoint[struct{}, float64]("clr")
	Add = redisrpc.NewEndpoint[float64, float64]("add")
	Sub = redisrpc.NewEndpoint[float64, float64]("sub")
	Mul = redisrpc.NewEndpoint[float64, float64]("mul")
	Div = redisrpc.NewEndpoint[float64, float64]("div")
	Val = redisrpc.NewEndpoint[struct{}, float64]("val")

	// Pow is not served: calling it shows the not_found error.
	Pow = redisrpc.NewEndpoint[float64, float64]("pow")
)

// calculator holds the accumulator. Every function returns its new value.
type calculator struct {
	mu  sync.Mutex
	acc float64
}

func (c *calculator) apply(f func(acc float64) (float64, error)) (float64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, err := f(c.acc)
	if err == nil {
		c.acc = v
	}
	return c.acc, err
}

func newMux(rc rueidis.Client, queue string) *redisrpc.Mux {
	var calc calculator
	mux := redisrpc.NewMux(rc, queue)
	nullary := func(f func(float64) (float64, error)) func(context.Context, struct{}) (float64, error) {
		return func(context.Context, struct{}) (float64, error) { return calc.apply(f) }
	}
	unary := func(f func(acc, x float64) (float64, error)) func(context.Context, float64) (float64, error) {
		return func(_ context.Context, x float64) (float64, error) {
			return calc.apply(func(acc float64) (float64, error) { return f(acc, x) })
		}
	}
	redisrpc.Handle(mux, Clr, nullary(func(float64) (float64, error) { return 0, nil }))
	redisrpc.Handle(mux, Val, nullary(func(acc float64) (float64, error) { return acc, nil }))
	redisrpc.Handle(mux, Add, unary(func(acc, x float64) (float64, error) { return acc + x, nil }))
	redisrpc.Handle(mux, Sub, unary(func(acc, x float64) (float64, error) { return acc - x, nil }))
	redisrpc.Handle(mux, Mul, unary(func(acc, x float64) (float64, error) { return acc * x, nil }))
	redisrpc.Handle(mux, Div, unary(func(acc, x float64) (float64, error) {
		if x == 0 {
			return acc, redisrpc.NewError(redisrpc.CodeInvalidArgument, "division by zero")
		}
		return acc / x, nil
	}))
	return mux
}

// sequence runs clr, add 5, sub 3, mul 4, div 2, val and a call of a missing
// function, printing each step, and fails on the first unexpected result.
// Classic servers may return nothing from clr and send no error codes.
func sequence(ctx context.Context, c *redisrpc.Client, classic bool, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	type step struct {
		name string
		call func() (float64, error)
		want float64
	}
	unary := func(e redisrpc.Endpoint[float64, float64], x float64) func() (float64, error) {
		return func() (float64, error) { return redisrpc.Call(ctx, c, e, x) }
	}
	nullary := func(e redisrpc.Endpoint[struct{}, float64]) func() (float64, error) {
		return func() (float64, error) { return redisrpc.Call(ctx, c, e, struct{}{}) }
	}
	steps := []step{
		{"clr()", nullary(Clr), 0},
		{"add(5)", unary(Add, 5), 5},
		{"sub(3)", unary(Sub, 3), 2},
		{"mul(4)", unary(Mul, 4), 8},
		{"div(2)", unary(Div, 2), 4},
		{"val()", nullary(Val), 4},
	}
	for _, s := range steps {
		got, err := s.call()
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		fmt.Fprintf(out, "%s = %g\n", s.name, got)
		if got != s.want {
			return fmt.Errorf("%s = %g, want %g", s.name, got, s.want)
		}
	}
	_, err := redisrpc.Call(ctx, c, Pow, 2)
	var rerr *redisrpc.Error
	switch {
	case !errors.As(err, &rerr):
		return fmt.Errorf("pow(2): got error %v, want a remote error", err)
	case !classic && rerr.Code != redisrpc.CodeNotFound:
		return fmt.Errorf("pow(2): got code %q, want %q", rerr.Code, redisrpc.CodeNotFound)
	}
	fmt.Fprintf(out, "pow(2) -> error: %v\n", rerr)
	return nil
}
