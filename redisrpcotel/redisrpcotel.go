// Package redisrpcotel traces and measures redisrpc calls with
// OpenTelemetry, on clients and servers alike.
//
//	otelx, err := redisrpcotel.NewInterceptor()
//	mux := redisrpc.NewMux(rc, "orders", redisrpc.WithInterceptors(otelx))
//	c := redisrpc.NewClient(rc, "inventory", redisrpc.WithInterceptors(otelx))
//
// Each call gets a client span and a server span, following OpenTelemetry's
// semantic conventions for RPC (version 1.26): rpc.system "redisrpc",
// rpc.service the queue, rpc.method the function, and the failure's code as
// rpc.redisrpc.code. The client puts the W3C trace context in the request's
// metadata (traceparent, tracestate), so that the server span's parent is the
// client span, across Redis. A client span fails on any error; a server span
// only on the codes that say the server failed: internal, unavailable,
// deadline_exceeded and none (a plain error).
//
// Metrics, through the OpenTelemetry metric API:
//
//	rpc.client.duration, rpc.server.duration    histogram, ms, by function and code
//	redisrpc.client.active, redisrpc.server.active   calls in flight
//	redisrpc.server.queue.wait                  histogram, ms, from sent to taken
//	redisrpc.server.pops, redisrpc.server.taken   counters of a Mux, from ObserveMux
//
// The queue wait subtracts the client's clock from the server's: it is as
// right as the clocks agree.
package redisrpcotel

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/redisrpc/redisrpc"
)

// ScopeName is the instrumentation scope of the spans and metrics.
const ScopeName = "github.com/redisrpc/redisrpc/redisrpcotel"

// CodeKey is the attribute of a failed call's code.
const CodeKey = attribute.Key("rpc.redisrpc.code")

// AttemptsKey is the attribute of a client span that counts the sends of
// its call: more than one after retries (redisrpc.WithRetries) or the
// resend of a response Redis lost.
const AttemptsKey = attribute.Key("rpc.redisrpc.attempts")

// ItemsKey is the attribute of the spans of a stream (redisrpc.CallStream,
// redisrpc.HandleStream) that counts its items: one span per stream.
const ItemsKey = attribute.Key("rpc.redisrpc.items")

// Option configures NewInterceptor and ObserveMux.
type Option func(*config)

type config struct {
	tracerProvider trace.TracerProvider
	meterProvider  metric.MeterProvider
	propagator     propagation.TextMapPropagator
}

func newConfig(opts []Option) config {
	c := config{
		tracerProvider: otel.GetTracerProvider(),
		meterProvider:  otel.GetMeterProvider(),
		propagator:     propagation.TraceContext{},
	}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// WithTracerProvider sets where spans go. The default is the global one,
// otel.GetTracerProvider().
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tracerProvider = tp }
}

// WithMeterProvider sets where metrics go. The default is the global one,
// otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.meterProvider = mp }
}

// WithPropagator sets how the trace context travels in a request's
// metadata. The default is W3C Trace Context.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) { c.propagator = p }
}

type instruments struct {
	tracer                         trace.Tracer
	propagator                     propagation.TextMapPropagator
	clientDuration, serverDuration metric.Float64Histogram
	clientActive, serverActive     metric.Int64UpDownCounter
	queueWait                      metric.Float64Histogram
}

// NewInterceptor returns an interceptor that traces and measures every call
// of the Client or Mux it is given to, as the package documentation says.
// It returns an error where an instrument cannot be made.
func NewInterceptor(opts ...Option) (redisrpc.Interceptor, error) {
	c := newConfig(opts)
	meter := c.meterProvider.Meter(ScopeName)
	in := instruments{tracer: c.tracerProvider.Tracer(ScopeName), propagator: c.propagator}
	var errs [5]error
	in.clientDuration, errs[0] = meter.Float64Histogram(semconv.RPCClientDurationName,
		metric.WithUnit(semconv.RPCClientDurationUnit), metric.WithDescription(semconv.RPCClientDurationDescription))
	in.serverDuration, errs[1] = meter.Float64Histogram(semconv.RPCServerDurationName,
		metric.WithUnit(semconv.RPCServerDurationUnit), metric.WithDescription(semconv.RPCServerDurationDescription))
	in.clientActive, errs[2] = meter.Int64UpDownCounter("redisrpc.client.active",
		metric.WithUnit("{call}"), metric.WithDescription("Calls a client has sent and not yet had answered."))
	in.serverActive, errs[3] = meter.Int64UpDownCounter("redisrpc.server.active",
		metric.WithUnit("{call}"), metric.WithDescription("Calls a server is running."))
	in.queueWait, errs[4] = meter.Float64Histogram("redisrpc.server.queue.wait",
		metric.WithUnit("ms"), metric.WithDescription("How long requests waited in the queue, from sent (the client's clock) to taken."))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	return in.intercept, nil
}

func (in *instruments) intercept(next redisrpc.CallFunc) redisrpc.CallFunc {
	return func(ctx context.Context, info *redisrpc.CallInfo, req any) (any, error) {
		if info.Side == redisrpc.SideServer {
			return in.serve(ctx, next, info, req)
		}
		return in.call(ctx, next, info, req)
	}
}

func attrs(info *redisrpc.CallInfo) []attribute.KeyValue {
	return []attribute.KeyValue{
		semconv.RPCSystemKey.String("redisrpc"),
		semconv.RPCService(info.Queue),
		semconv.RPCMethod(info.Function),
	}
}

// call makes the client span and puts its context in the request's metadata.
func (in *instruments) call(ctx context.Context, next redisrpc.CallFunc, info *redisrpc.CallInfo, req any) (any, error) {
	base := attrs(info)
	ctx, span := in.tracer.Start(ctx, info.Queue+"/"+info.Function, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(base...))
	defer span.End()
	if info.ID != "" {
		span.SetAttributes(attribute.String("rpc.redisrpc.id", info.ID))
	}
	carrier := propagation.MapCarrier{}
	for k, v := range info.Meta {
		carrier[k] = v
	}
	in.propagator.Inject(ctx, carrier)
	info.Meta = carrier

	set := metric.WithAttributes(base...)
	in.clientActive.Add(ctx, 1, set)
	start := time.Now()
	resp, err := next(ctx, info, req)
	in.clientActive.Add(ctx, -1, set)
	if info.Attempts > 0 {
		span.SetAttributes(AttemptsKey.Int(info.Attempts))
	}
	if info.Stream {
		span.SetAttributes(ItemsKey.Int64(info.Items))
	}
	code := in.finish(span, err, true)
	in.clientDuration.Record(ctx, ms(time.Since(start)), metric.WithAttributes(append(base, CodeKey.String(code))...))
	return resp, err
}

// serve makes the server span, a child of the caller's.
func (in *instruments) serve(ctx context.Context, next redisrpc.CallFunc, info *redisrpc.CallInfo, req any) (any, error) {
	start := time.Now()
	base := attrs(info)
	ctx = in.propagator.Extract(ctx, propagation.MapCarrier(info.Meta))
	ctx, span := in.tracer.Start(ctx, info.Queue+"/"+info.Function, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(base...))
	defer span.End()
	if info.ID != "" {
		span.SetAttributes(attribute.String("rpc.redisrpc.id", info.ID))
	}
	set := metric.WithAttributes(base...)
	if !info.Sent.IsZero() {
		wait := max(start.Sub(info.Sent), 0)
		span.SetAttributes(attribute.Float64("rpc.redisrpc.queue_wait_ms", ms(wait)))
		in.queueWait.Record(ctx, ms(wait), set)
	}
	in.serverActive.Add(ctx, 1, set)
	resp, err := next(ctx, info, req)
	in.serverActive.Add(ctx, -1, set)
	if info.Stream {
		span.SetAttributes(ItemsKey.Int64(info.Items))
	}
	code := in.finish(span, err, false)
	in.serverDuration.Record(ctx, ms(time.Since(start)), metric.WithAttributes(append(base, CodeKey.String(code))...))
	return resp, err
}

// finish sets span's status from err and returns the code to record: "ok",
// the failure's code, or "unknown" for a failure without one.
func (in *instruments) finish(span trace.Span, err error, client bool) string {
	if err == nil {
		return "ok"
	}
	code := string(redisrpc.CodeOf(err))
	if code == "" {
		code = "unknown"
	}
	span.SetAttributes(CodeKey.String(code))
	if client || serverFault(redisrpc.Code(code)) {
		span.SetStatus(codes.Error, err.Error())
		span.RecordError(err)
	}
	return code
}

// serverFault reports whether a failure with code is the server's doing.
func serverFault(code redisrpc.Code) bool {
	switch code {
	case redisrpc.CodeInternal, redisrpc.CodeUnavailable, redisrpc.CodeDeadlineExceeded, "unknown":
		return true
	}
	return false
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ObserveMux reports m's Stats as metrics, read at each collection:
// redisrpc.server.pops and redisrpc.server.taken, whose ratio is how many
// requests a pop brings, with attribute rpc.service = the queue. Call the
// returned function to stop.
func ObserveMux(m *redisrpc.Mux, opts ...Option) (stop func() error, err error) {
	c := newConfig(opts)
	meter := c.meterProvider.Meter(ScopeName)
	pops, err1 := meter.Int64ObservableCounter("redisrpc.server.pops",
		metric.WithUnit("{pop}"), metric.WithDescription("Pops of a server that brought requests."))
	taken, err2 := meter.Int64ObservableCounter("redisrpc.server.taken",
		metric.WithUnit("{request}"), metric.WithDescription("Requests a server's pops brought."))
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	set := metric.WithAttributes(semconv.RPCSystemKey.String("redisrpc"), semconv.RPCService(m.Queue()))
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := m.Stats()
		o.ObserveInt64(pops, int64(st.Pops), set)
		o.ObserveInt64(taken, int64(st.Taken), set)
		return nil
	}, pops, taken)
	if err != nil {
		return nil, err
	}
	return reg.Unregister, nil
}
