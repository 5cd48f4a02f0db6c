package faults_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/inspect"
)

// The server process's side of place_order, and a client's that has
// drifted from it: the client sends qty where the server reads quantity,
// and reads left where the server sends remaining.
type (
	serverOrder struct {
		Item     string `json:"item"`
		Quantity int    `json:"quantity"`
	}
	serverReply struct {
		OrderID   string `json:"order_id"`
		Remaining int    `json:"remaining"`
	}
	clientOrder struct {
		Item string `json:"item"`
		Qty  int    `json:"qty"`
	}
	clientReply struct {
		OrderID string `json:"order_id"`
		Left    int    `json:"left"`
	}
)

var (
	serverPlaceOrder = redisrpc.NewEndpoint[serverOrder, serverReply]("place_order")
	clientPlaceOrder = redisrpc.NewEndpoint[clientOrder, clientReply]("place_order")
	samePlaceOrder   = redisrpc.NewEndpoint[serverOrder, serverReply]("place_order")
)

// placeOrder is the server process's handler: it says how many it took.
func placeOrder(_ context.Context, o serverOrder) (serverReply, error) {
	return serverReply{OrderID: "o-" + o.Item, Remaining: 10 - o.Quantity}, nil
}

const wantDrift = `place_order: the client sends "qty", which the server's request type lacks; ` +
	`the server reads "quantity", which the client never sends; ` +
	`the server sends "remaining", which the client's response type lacks; ` +
	`the client reads "left", which the server never sends`

// syncBuffer is a log both the client's goroutines and the test use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestContractDrift: a server in another process serves place_order with
// types the client's differ from. The client logs the drift once, naming
// each member, and its calls go on (the server sees quantity 0); with
// WithStrictContract they fail at once, unsent, with CodeInvalidArgument and
// the same text; a client whose types agree logs nothing and calls.
func TestContractDrift(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	startServer(t, q, "drift")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for !slices.ContainsFunc(served(t, ctx, q), func(f inspect.Function) bool { return f.Name == "place_order" }) {
		time.Sleep(20 * time.Millisecond) // the server publishes its schemas as it starts serving
	}
	var log syncBuffer
	c := redisrpc.NewClient(rc, q, redisrpc.WithLogger(slog.New(slog.NewJSONHandler(&log, nil))))
	defer c.Close()
	for range 3 {
		got, err := redisrpc.Call(ctx, c, clientPlaceOrder, clientOrder{Item: "tea", Qty: 4})
		if err != nil {
			t.Fatal(err)
		}
		if got != (clientReply{OrderID: "o-tea"}) { // quantity 0 taken; left never sent
			t.Errorf("got %+v, want the drifted zero values {o-tea 0}", got)
		}
	}
	if n := strings.Count(log.String(), "the client's types and the server's differ"); n != 1 {
		t.Errorf("got %d warnings, want 1 for three calls:\n%s", n, log.String())
	}
	if want, _ := jsonString(wantDrift); !strings.Contains(log.String(), want) {
		t.Errorf("got log\n%s\nwant the drift %s", log.String(), wantDrift)
	}

	strict := redisrpc.NewClient(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithStrictContract())
	defer strict.Close()
	_, err := redisrpc.Call(ctx, strict, clientPlaceOrder, clientOrder{Item: "tea", Qty: 4})
	var rerr *redisrpc.Error
	if !errors.As(err, &rerr) || rerr.Code != redisrpc.CodeInvalidArgument || rerr.Message != wantDrift {
		t.Fatalf("strict: got %v, want invalid_argument: %s", err, wantDrift)
	}

	var quietLog syncBuffer
	same := redisrpc.NewClient(rc, q, redisrpc.WithLogger(slog.New(slog.NewTextHandler(&quietLog, nil))), redisrpc.WithStrictContract())
	defer same.Close()
	got, err := redisrpc.Call(ctx, same, samePlaceOrder, serverOrder{Item: "tea", Quantity: 4})
	if err != nil || got != (serverReply{OrderID: "o-tea", Remaining: 6}) {
		t.Fatalf("agreeing types: got %+v, %v; want {o-tea 6}", got, err)
	}
	if strings.Contains(quietLog.String(), "differ") {
		t.Errorf("agreeing types: got a warning:\n%s", quietLog.String())
	}
	// The server counts 4 calls, at its beats (every third of a second):
	// three drifted, one agreeing, and not the strict client's.
	deadline := time.Now().Add(3 * time.Second)
	for placed(t, ctx, q) < 4 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(700 * time.Millisecond)
	if n := placed(t, ctx, q); n != 4 {
		t.Errorf("the server ran %d calls, want 4: the strict client's is never sent", n)
	}
}

// served is the functions of q's live servers.
func served(t *testing.T, ctx context.Context, q string) []inspect.Function {
	t.Helper()
	got, err := inspect.Inspect(ctx, rc, q)
	if err != nil {
		t.Fatal(err)
	}
	return got.Functions
}

// placed is how many calls of place_order q's servers count, as of their
// last beat.
func placed(t *testing.T, ctx context.Context, q string) uint64 {
	t.Helper()
	got, err := inspect.Inspect(ctx, rc, q)
	if err != nil {
		t.Fatal(err)
	}
	return got.Stats["place_order"].Calls
}

// jsonString is s as a JSON string holds it, without its quotes.
func jsonString(s string) (string, error) {
	b, err := json.Marshal(s)
	return string(b[1 : len(b)-1]), err
}
