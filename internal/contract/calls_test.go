package contract_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newQueue(t *testing.T) string { return redisrpctest.Queue(t) }

func serve(t *testing.T, mux *redisrpc.Mux) { t.Helper(); redisrpctest.Serve(t, mux) }

func newClient(t *testing.T, rc rueidis.Client, queue string, opts ...redisrpc.ClientOption) *redisrpc.Client {
	c := redisrpc.NewClient(rc, queue, append([]redisrpc.ClientOption{redisrpc.WithLogger(quiet)}, opts...)...)
	t.Cleanup(func() { c.Close() })
	return c
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestStrictContractNamedArgs: a WithNamedArgs endpoint whose one
// member a server reads as the whole value (add(number=5) into a number,
// decodeArgs' kwargs fallback) works, but the contract check calls it a
// breaking drift, and WithStrictContract refuses the call.
func TestStrictContractNamedArgs(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	ctx := timeout(t, 10*time.Second)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	redisrpc.Handle(mux, redisrpc.NewEndpoint[float64, float64]("double"), func(_ context.Context, x float64) (float64, error) { return 2 * x, nil })
	serve(t, mux)
	type args struct {
		Number float64 `json:"number"`
	}
	e := redisrpc.NewEndpoint[args, float64]("double", redisrpc.WithNamedArgs())
	if got, err := redisrpc.Call(ctx, newClient(t, rc, q), e, args{5}); err != nil || got != 10 {
		t.Fatalf("lax client: got %v, %v; want 10", got, err)
	}
	got, err := redisrpc.Call(ctx, newClient(t, rc, q, redisrpc.WithStrictContract()), e, args{5})
	if err != nil || got != 10 {
		t.Errorf("strict client: got %v, %v; want 10 (no false drift WithNamedArgs)", got, err)
	}
}

// TestStrictContractEmptyReq: an endpoint with an empty-struct Req is
// sent with no arguments, which any server reads as its zero value, but the
// check says "the client sends an object" and the strict client refuses it.
func TestStrictContractEmptyReq(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	ctx := timeout(t, 10*time.Second)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	redisrpc.Handle(mux, redisrpc.NewEndpoint[[]string, int]("count"), func(_ context.Context, names []string) (int, error) { return len(names), nil })
	serve(t, mux)
	e := redisrpc.NewEndpoint[struct{}, int]("count")
	if got, err := redisrpc.Call(ctx, newClient(t, rc, q), e, struct{}{}); err != nil || got != 0 {
		t.Fatalf("lax client: got %v, %v; want 0", got, err)
	}
	if _, err := redisrpc.Call(ctx, newClient(t, rc, q, redisrpc.WithStrictContract()), e, struct{}{}); err != nil {
		t.Errorf("strict client: got %v; want the call made (it sends no args)", err)
	}
}

type rvOrder struct {
	Item     string `json:"item"`
	Quantity int    `json:"quantity"`
}

type rvOrderQty struct {
	Item string `json:"item"`
	Qty  int    `json:"qty"`
}

// TestStrictContractPositionalNamedItems: a typed WithPositionalArgs
// endpoint whose items are a named struct, against a server reading one
// such struct: the items' $ref is resolved against the items' schema, not
// the root that holds $defs, so no drift is found and the strict client
// sends a request whose "qty" the server drops.
func TestStrictContractPositionalNamedItems(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	ctx := timeout(t, 10*time.Second)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	redisrpc.Handle(mux, redisrpc.NewEndpoint[rvOrder, int]("place"), func(_ context.Context, o rvOrder) (int, error) { return o.Quantity, nil })
	serve(t, mux)
	var mu sync.Mutex
	var out bytes.Buffer
	c := newClient(t, rc, q, redisrpc.WithStrictContract(), redisrpc.WithLogger(slog.New(slog.NewTextHandler(lockedWriter{&mu, &out}, nil))))
	e := redisrpc.NewEndpoint[[]rvOrderQty, int]("place", redisrpc.WithPositionalArgs())
	got, err := redisrpc.Call(ctx, c, e, []rvOrderQty{{"tea", 2}})
	var rerr *redisrpc.Error
	if !errors.As(err, &rerr) || rerr.Code != redisrpc.CodeInvalidArgument {
		mu.Lock()
		defer mu.Unlock()
		t.Errorf("got %v, %v (the server read quantity 0), log %q; want invalid_argument: the client sends \"qty\" ... the server reads \"quantity\"", got, err, out.String())
	}
}

type rvClosed struct {
	A int `json:"a"`
}

func (rvClosed) JSONSchema() json.RawMessage {
	return json.RawMessage(`{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"],"additionalProperties":false}`)
}

// TestStrictDecodingDescriberClosed: WithStrictDecoding lets an unknown
// member through to a Describer type whose schema says
// "additionalProperties": false: false is read as a map's value schema.
func TestStrictDecodingDescriberClosed(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	ctx := timeout(t, 10*time.Second)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithStrictDecoding())
	redisrpc.Handle(mux, redisrpc.NewEndpoint[rvClosed, int]("f"), func(_ context.Context, v rvClosed) (int, error) { return v.A, nil })
	serve(t, mux)
	raw := redisrpc.NewEndpoint[json.RawMessage, int]("f")
	_, err := redisrpc.Call(ctx, newClient(t, rc, q), raw, json.RawMessage(`{"a":1,"b":2}`))
	if redisrpc.CodeOf(err) != redisrpc.CodeInvalidArgument || !strings.Contains(err.Error(), `"b"`) {
		t.Errorf("got %v; want invalid_argument naming \"b\"", err)
	}
}

type rvItem struct {
	SKU string `json:"sku"`
}

// TestStrictDecodingFallbacks: no false positives for the decode
// fallbacks, maps, any and RawMessage.
func TestStrictDecodingFallbacks(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	ctx := timeout(t, 10*time.Second)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithStrictDecoding())
	redisrpc.Handle(mux, redisrpc.NewEndpoint[[]rvItem, int]("items"), func(_ context.Context, v []rvItem) (int, error) { return len(v), nil })
	redisrpc.Handle(mux, redisrpc.NewEndpoint[float64, float64]("num"), func(_ context.Context, v float64) (float64, error) { return v, nil })
	type mixed struct {
		M   map[string]rvItem `json:"m"`
		Any any               `json:"any"`
		Raw json.RawMessage   `json:"raw"`
		T   time.Time         `json:"t"`
	}
	redisrpc.Handle(mux, redisrpc.NewEndpoint[mixed, int]("mixed"), func(_ context.Context, v mixed) (int, error) { return len(v.M), nil })
	serve(t, mux)
	c := newClient(t, rc, q)
	if n, err := redisrpc.Call(ctx, c, redisrpc.NewEndpoint[[]rvItem, int]("items", redisrpc.WithPositionalArgs()), []rvItem{{"a"}}); err != nil || n != 1 {
		t.Errorf("one positional arg, the whole array: %v %v", n, err)
	}
	if n, err := redisrpc.Call(ctx, c, redisrpc.NewEndpoint[map[string][]rvItem, int]("items", redisrpc.WithNamedArgs()), map[string][]rvItem{"xs": {{"a"}, {"b"}}}); err != nil || n != 2 {
		t.Errorf("kwargs of one member: %v %v", n, err)
	}
	if n, err := redisrpc.Call(ctx, c, redisrpc.NewEndpoint[map[string]float64, float64]("num", redisrpc.WithNamedArgs()), map[string]float64{"number": 5}); err != nil || n != 5 {
		t.Errorf("kwargs of one member into a number: %v %v", n, err)
	}
	if n, err := redisrpc.Call(ctx, c, redisrpc.NewEndpoint[json.RawMessage, int]("mixed"), json.RawMessage(`{"m":{"k":{"SKU":"x"}},"any":{"z":1},"raw":{"y":2},"t":"2020-01-01T00:00:00Z"}`)); err != nil || n != 1 {
		t.Errorf("maps, any, raw: %v %v", n, err)
	}
}

// TestCLIEndpointNoDrift: the CLI's endpoints against servers of
// several types, strict: no drift.
func TestCLIEndpointNoDrift(t *testing.T) {
	t.Parallel()
	rc := redisrpctest.Redis(t)
	q := newQueue(t)
	ctx := timeout(t, 10*time.Second)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet))
	redisrpc.Handle(mux, redisrpc.NewEndpoint[rvOrder, rvOrder]("s"), func(_ context.Context, v rvOrder) (rvOrder, error) { return v, nil })
	redisrpc.Handle(mux, redisrpc.NewEndpoint[*rvOrder, int]("p"), func(_ context.Context, v *rvOrder) (int, error) { return 1, nil })
	redisrpc.Handle(mux, redisrpc.NewEndpoint[[]int, int]("a"), func(_ context.Context, v []int) (int, error) { return len(v), nil })
	redisrpc.Handle(mux, redisrpc.NewEndpoint[int, int]("i"), func(_ context.Context, v int) (int, error) { return v, nil })
	redisrpc.Handle(mux, redisrpc.NewEndpoint[struct{}, int]("e"), func(_ context.Context, v struct{}) (int, error) { return 0, nil })
	serve(t, mux)
	var mu sync.Mutex
	var out bytes.Buffer
	c := newClient(t, rc, q, redisrpc.WithStrictContract(), redisrpc.WithLogger(slog.New(slog.NewTextHandler(lockedWriter{&mu, &out}, nil))))
	for _, tc := range []struct {
		f    string
		args []json.RawMessage
	}{
		{"s", []json.RawMessage{json.RawMessage(`{"item":"a","quantity":1}`)}},
		{"p", []json.RawMessage{json.RawMessage(`{"item":"a","quantity":1}`)}},
		{"p", nil},
		{"a", []json.RawMessage{json.RawMessage(`1`), json.RawMessage(`2`)}},
		{"i", []json.RawMessage{json.RawMessage(`1`)}},
		{"e", nil},
	} {
		if _, err := redisrpc.Call(ctx, c, redisrpc.NewEndpoint[[]json.RawMessage, json.RawMessage](tc.f, redisrpc.WithPositionalArgs()), tc.args); err != nil {
			t.Errorf("%s %s: %v", tc.f, tc.args, err)
		}
	}
	if _, err := redisrpc.Call(ctx, c, redisrpc.NewEndpoint[json.RawMessage, json.RawMessage]("s", redisrpc.WithNamedArgs()), json.RawMessage(`{"item":"a","quantity":1}`)); err != nil {
		t.Errorf("kwargs: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if out.Len() > 0 {
		t.Errorf("logged %s", out.String())
	}
}

// lockedWriter is a log that the client's goroutines and the test share.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}
