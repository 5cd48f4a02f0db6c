package redisrpcotel_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/redisrpcotel"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

var div = redisrpc.NewEndpoint[float64, float64]("div")

// TestSpansAndMetrics: a call gets a client span and a server span whose
// parent it is, across Redis, with the RPC attributes and statuses, and the
// metrics of both sides.
func TestSpansAndMetrics(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	otelx, err := redisrpcotel.NewInterceptor(redisrpcotel.WithTracerProvider(tp), redisrpcotel.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	rc := redisrpctest.Redis(t)
	q := redisrpctest.Queue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithInterceptors(otelx))
	redisrpc.Handle(mux, div, func(ctx context.Context, x float64) (float64, error) {
		if x == 0 {
			return 0, redisrpc.NewError(redisrpc.CodeInvalidArgument, "division by zero")
		}
		if x < 0 {
			panic("negative")
		}
		if !trace.SpanContextFromContext(ctx).IsValid() {
			t.Error("the handler's context has no span")
		}
		return 1 / x, nil
	})
	redisrpctest.Serve(t, mux)
	stop, err := redisrpcotel.ObserveMux(mux, redisrpcotel.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	c := redisrpc.NewClient(rc, q, redisrpc.WithInterceptors(otelx))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx, parent := tp.Tracer("test").Start(ctx, "parent")
	for _, x := range []float64{2, 0, -1} {
		redisrpc.Call(ctx, c, div, x)
	}
	parent.End()

	ended := spans.Ended()
	byKind := map[trace.SpanKind][]sdktrace.ReadOnlySpan{}
	for _, s := range ended {
		byKind[s.SpanKind()] = append(byKind[s.SpanKind()], s)
	}
	if len(byKind[trace.SpanKindClient]) != 3 || len(byKind[trace.SpanKindServer]) != 3 {
		t.Fatalf("spans: got %d client and %d server, want 3 and 3", len(byKind[trace.SpanKindClient]), len(byKind[trace.SpanKindServer]))
	}
	wantStatus := []struct{ client, server codes.Code }{{codes.Unset, codes.Unset}, {codes.Error, codes.Unset}, {codes.Error, codes.Error}}
	for i, cs := range byKind[trace.SpanKindClient] {
		ss := byKind[trace.SpanKindServer][i]
		if cs.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("call %d: the client span's parent is not the caller's span", i)
		}
		if ss.Parent().SpanID() != cs.SpanContext().SpanID() || ss.SpanContext().TraceID() != cs.SpanContext().TraceID() || !ss.Parent().IsRemote() {
			t.Errorf("call %d: the server span's parent is %v, want the client span %v, remote", i, ss.Parent(), cs.SpanContext())
		}
		for _, s := range []sdktrace.ReadOnlySpan{cs, ss} {
			a := attribute.NewSet(s.Attributes()...)
			if v, _ := a.Value("rpc.system"); v.AsString() != "redisrpc" {
				t.Errorf("call %d: rpc.system %q", i, v.AsString())
			}
			if v, _ := a.Value("rpc.service"); v.AsString() != q {
				t.Errorf("call %d: rpc.service %q, want %q", i, v.AsString(), q)
			}
			if v, _ := a.Value("rpc.method"); v.AsString() != "div" {
				t.Errorf("call %d: rpc.method %q, want div", i, v.AsString())
			}
			if s.Name() != q+"/div" {
				t.Errorf("call %d: span name %q", i, s.Name())
			}
		}
		ca := attribute.NewSet(cs.Attributes()...)
		if v, ok := ca.Value(redisrpcotel.AttemptsKey); !ok || v.AsInt64() != 1 {
			t.Errorf("call %d: the client span's attempts: %v (set %v), want 1", i, v.AsInt64(), ok)
		}
		if got := [2]codes.Code{cs.Status().Code, ss.Status().Code}; got != [2]codes.Code{wantStatus[i].client, wantStatus[i].server} {
			t.Errorf("call %d: statuses (client, server) %v, want %v", i, got, wantStatus[i])
		}
	}
	if a := attribute.NewSet(byKind[trace.SpanKindServer][1].Attributes()...); !a.HasValue(redisrpcotel.CodeKey) {
		t.Error("the failed server span has no code")
	} else if v, _ := a.Value(redisrpcotel.CodeKey); v.AsString() != "invalid_argument" {
		t.Errorf("the failed server span's code: %q", v.AsString())
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			got[m.Name] = m.Data
		}
	}
	for _, name := range []string{"rpc.client.duration", "rpc.server.duration"} {
		h, ok := got[name].(metricdata.Histogram[float64])
		if !ok {
			t.Errorf("%s: missing", name)
			continue
		}
		codesSeen := map[string]uint64{}
		for _, dp := range h.DataPoints {
			v, _ := dp.Attributes.Value(redisrpcotel.CodeKey)
			codesSeen[v.AsString()] += dp.Count
		}
		if codesSeen["ok"] != 1 || codesSeen["invalid_argument"] != 1 || codesSeen["internal"] != 1 {
			t.Errorf("%s: calls by code %v, want one each of ok, invalid_argument, internal", name, codesSeen)
		}
	}
	if h, ok := got["redisrpc.server.queue.wait"].(metricdata.Histogram[float64]); !ok || len(h.DataPoints) != 1 || h.DataPoints[0].Count != 3 {
		t.Errorf("queue wait: got %+v, want 3 waits", got["redisrpc.server.queue.wait"])
	}
	for _, name := range []string{"redisrpc.client.active", "redisrpc.server.active"} {
		s, ok := got[name].(metricdata.Sum[int64])
		if !ok || len(s.DataPoints) == 0 || s.DataPoints[0].Value != 0 {
			t.Errorf("%s: got %+v, want 0 once all calls ended", name, got[name])
		}
	}
	pops, ok1 := got["redisrpc.server.pops"].(metricdata.Sum[int64])
	taken, ok2 := got["redisrpc.server.taken"].(metricdata.Sum[int64])
	if !ok1 || !ok2 || taken.DataPoints[0].Value != 3 || pops.DataPoints[0].Value < 1 || pops.DataPoints[0].Value > 3 {
		t.Errorf("pops and requests taken: got %+v and %+v, want 1 to 3 pops bringing 3", got["redisrpc.server.pops"], got["redisrpc.server.taken"])
	}
}

type payload struct {
	ID   int    `json:"id"`
	Data string `json:"data"`
}

// BenchmarkCallOTel measures a call through the OpenTelemetry interceptor on
// both sides, with the SDK recording every span (exported nowhere) and every
// metric, at 16 callers with 64 B payloads, as the core's
// BenchmarkInterceptors does without it.
//
//	go test -run '^$' -bench CallOTel -benchtime 100000x -count 5
func BenchmarkCallOTel(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	otelx, err := redisrpcotel.NewInterceptor(redisrpcotel.WithTracerProvider(tp), redisrpcotel.WithMeterProvider(mp))
	if err != nil {
		b.Fatal(err)
	}
	echo := redisrpc.NewEndpoint[payload, payload]("echo")
	rc := redisrpctest.Redis(b)
	q := redisrpctest.Queue(b)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithInterceptors(otelx))
	redisrpc.Handle(mux, echo, func(_ context.Context, p payload) (payload, error) { return p, nil })
	redisrpctest.Serve(b, mux)
	c := redisrpc.NewClient(rc, q, redisrpc.WithInterceptors(otelx))
	defer c.Close()
	req := payload{Data: strings.Repeat("x", 44)}
	redisrpctest.Benchmark(b, 16, func(ctx context.Context) error {
		_, err := redisrpc.Call(ctx, c, echo, req)
		return err
	})
}

var countdown = redisrpc.NewStream[int, int]("countdown")

// TestStreamSpans: a stream is one client span and one server span, its
// child, each counting the items.
func TestStreamSpans(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	otelx, err := redisrpcotel.NewInterceptor(redisrpcotel.WithTracerProvider(tp))
	if err != nil {
		t.Fatal(err)
	}
	rc := redisrpctest.Redis(t)
	q := redisrpctest.Queue(t)
	mux := redisrpc.NewMux(rc, q, redisrpc.WithInterceptors(otelx))
	redisrpc.HandleStream(mux, countdown, func(ctx context.Context, n int, send func(int) error) error {
		for i := n; i > 0; i-- {
			if err := send(i); err != nil {
				return err
			}
		}
		return nil
	})
	redisrpctest.Serve(t, mux)
	c := redisrpc.NewClient(rc, q, redisrpc.WithInterceptors(otelx))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := 0
	for _, err := range redisrpc.CallStream(ctx, c, countdown, 5) {
		if err != nil {
			t.Fatal(err)
		}
		got++
	}
	ended := spans.Ended()
	if got != 5 || len(ended) != 2 {
		t.Fatalf("got %d items and %d spans, want 5 and 2", got, len(ended))
	}
	for _, s := range ended {
		var items int64 = -1
		for _, kv := range s.Attributes() {
			if kv.Key == redisrpcotel.ItemsKey {
				items = kv.Value.AsInt64()
			}
		}
		if items != 5 {
			t.Errorf("the %v span: got %d items, want 5", s.SpanKind(), items)
		}
	}
	if ended[0].Parent().SpanID() != ended[1].SpanContext().SpanID() && ended[1].Parent().SpanID() != ended[0].SpanContext().SpanID() {
		t.Error("the server span is not the client span's child")
	}
}
