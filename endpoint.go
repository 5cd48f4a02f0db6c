package redisrpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/redisrpc/redisrpc/internal/jsoncodec"
	"github.com/redisrpc/redisrpc/internal/schema"
	"github.com/redisrpc/redisrpc/internal/wire"
)

// Codec turns requests and responses into JSON and back: the values a Call
// sends and a handler returns, and the arguments and results it decodes. The
// default is DefaultCodec; StdJSON is encoding/json alone; WithCodec sets
// either, or another, such as a library with encoding/json's API
// (github.com/bytedance/sonic):
//
//	type sonicJSON struct{}
//
//	func (sonicJSON) Marshal(v any) ([]byte, error)      { return sonic.ConfigStd.Marshal(v) }
//	func (sonicJSON) Unmarshal(data []byte, v any) error { return sonic.ConfigStd.Unmarshal(data, v) }
//
// Such libraries differ from encoding/json in corners (see their docs):
// redisrpctest.CheckCodec holds one to encoding/json on struct tags,
// omitempty, MarshalJSON, UnmarshalJSON and json.RawMessage. The envelope of
// each message and the details of errors are always encoded by redisrpc
// itself, so peers need not share a codec. What a Codec other than these two
// marshals is checked to be JSON before it is sent.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

var (
	// DefaultCodec, the default Codec, is github.com/goccy/go-json, pure Go
	// and several times faster than encoding/json, both ways, but for types
	// that hold a ",string" field, a float32 or a map without plain string
	// keys anywhere, which it decodes with encoding/json (goccy takes "+1",
	// ".5", "Inf" and "NaN" in ",string" fields, and other keys, which
	// encoding/json refuses, and refuses float32s just above MaxFloat32).
	// It gives encoding/json's results, held so by a differential fuzz
	// test on every type requests commonly hold (README, JSON codec).
	DefaultCodec Codec = jsoncodec.Fast{}
	// StdJSON is encoding/json alone, for WithCodec.
	StdJSON Codec = stdJSON{}
)

// stdJSON is encoding/json.
type stdJSON struct{}

func (stdJSON) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (stdJSON) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// marshal encodes v with codec, checking the JSON of a codec other than the
// two of this package, whose output is encoding/json's, embedded verbatim in
// a message.
func marshal(codec Codec, v any) ([]byte, error) {
	b, err := codec.Marshal(v)
	if err != nil {
		return nil, err
	}
	switch codec.(type) {
	case stdJSON, jsoncodec.Fast:
	default:
		if !wire.Valid(b) {
			return nil, fmt.Errorf("the codec's %T produced no valid JSON: %.40q", codec, b)
		}
	}
	return b, nil
}

// Describer is a type that gives its own JSON Schema (draft 2020-12), as the
// JSON of one. Mux.Handle publishes each function's request and response
// types in the registry as JSON Schema, derived from the Go type as the codec
// encodes it (docs/protocol.md); a type with its own MarshalJSON or
// UnmarshalJSON counts as any JSON value there, unless it is a Describer. A
// Describer's schema is published as it gives it, and compared by its type,
// properties, items and $ref.
type Describer interface {
	JSONSchema() json.RawMessage
}

var _ schema.Describer = Describer(nil) // the interface internal/schema looks for

// Endpoint names a remote function taking a Req and returning a Resp. Both are
// carried as JSON. An Endpoint is a small value, safe to copy and to share
// between goroutines; declare it once, as a package variable, and use it on
// both sides:
//
//	var Add = redisrpc.NewEndpoint[float64, float64]("add")
type Endpoint[Req, Resp any] struct {
	name  string
	style argStyle
}

// argStyle is how a Client lays out Req in function_call.
type argStyle uint8

const (
	argsOne    argStyle = iota // args: [req]
	argsNone                   // no args: Req is an empty struct
	argsNamed                  // kwargs: req
	argsSpread                 // args: req, a JSON array
)

// EndpointOption configures an Endpoint.
type EndpointOption func(*argStyle)

// WithNamedArgs makes a Client send Req as named arguments (kwargs), for classic
// servers whose function takes keyword arguments. Req must encode as a JSON object.
// By default Req is sent as one positional argument.
func WithNamedArgs() EndpointOption {
	return func(s *argStyle) { *s = argsNamed }
}

// WithPositionalArgs makes a Client send Req, which must encode as a JSON array
// (a slice, an array, or a type of your own), as that many positional arguments,
// for functions that take several. By default Req is sent as one positional argument.
func WithPositionalArgs() EndpointOption {
	return func(s *argStyle) { *s = argsSpread }
}

// NewEndpoint returns the endpoint of the function called name. A Req that is a
// struct without fields is sent as no arguments, so that functions that take none
// can be called. It panics if name is empty.
func NewEndpoint[Req, Resp any](name string, opts ...EndpointOption) Endpoint[Req, Resp] {
	if name == "" {
		panic("redisrpc: NewEndpoint with an empty name")
	}
	style := argsOne
	if t := reflect.TypeFor[Req](); t.Kind() == reflect.Struct && t.NumField() == 0 {
		style = argsNone
	}
	for _, opt := range opts {
		opt(&style)
	}
	return Endpoint[Req, Resp]{name: name, style: style}
}

// Name returns the function name e calls.
func (e Endpoint[Req, Resp]) Name() string { return e.name }

// encode lays out req, encoded by codec, as the arguments of a function call.
// Its errors are wrapped in a callError, which names the package and function.
func (e Endpoint[Req, Resp]) encode(codec Codec, req Req) (wire.FunctionCall, error) {
	fc := wire.FunctionCall{Name: e.name}
	if e.name == "" {
		return fc, errors.New("call of a zero Endpoint; make endpoints with NewEndpoint")
	}
	if e.style == argsNone {
		return fc, nil
	}
	b, err := marshal(codec, req)
	if err != nil {
		return fc, fmt.Errorf("encoding the request: %w", err)
	}
	switch e.style {
	case argsNamed:
		if b[0] != '{' {
			return fc, fmt.Errorf("WithNamedArgs needs a request that encodes as a JSON object, got %.40s", b)
		}
		if !bytes.Equal(b, []byte("{}")) {
			fc.Kwargs = b
		}
	case argsSpread:
		if bytes.Equal(b, []byte("null")) {
			break // a nil slice: no arguments
		}
		if b[0] != '[' {
			return fc, fmt.Errorf("WithPositionalArgs needs a request that encodes as a JSON array, got %.40s", b)
		}
		if !bytes.Equal(b, []byte("[]")) {
			fc.Args = b
		}
	default:
		fc.Arg = b
	}
	return fc, nil
}

// decodeArgs maps the arguments of a call onto a Req with codec, following the
// table in the package documentation, and returns the JSON it decoded.
func decodeArgs[Req any](codec Codec, fc *wire.FunctionCall) (Req, []byte, error) {
	var req Req
	data, alt, err := fc.ArgsJSON()
	if err != nil || data == nil {
		return req, nil, err
	}
	err = codec.Unmarshal(data, &req)
	if err == nil || alt == nil {
		return req, data, err
	}
	// One positional argument that does not fit Req may still be the whole
	// argument list of a slice-typed Req, as WithPositionalArgs sends it; and
	// named arguments with one member, its value: add(number=5) into a number.
	var other Req
	if codec.Unmarshal(alt, &other) == nil {
		return other, alt, nil
	}
	return req, data, err
}

// Stream names a remote function that answers a Req with many Items, in
// order, and an end: a stream endpoint. Like an Endpoint it is a small value,
// safe to copy and share; declare it once and use it on both sides:
//
//	var Tail = redisrpc.NewStream[Query, Row]("tail")
//
// Serve it with HandleStream and call it with CallStream. Streams are at
// most once: a stream whose server stops mid-way ends with an error, and is
// never run again.
type Stream[Req, Item any] struct {
	e Endpoint[Req, Item]
}

// NewStream returns the stream endpoint of the function called name; opts
// lay out Req as for NewEndpoint. It panics if name is empty.
func NewStream[Req, Item any](name string, opts ...EndpointOption) Stream[Req, Item] {
	if name == "" {
		panic("redisrpc: NewStream with an empty name")
	}
	return Stream[Req, Item]{e: NewEndpoint[Req, Item](name, opts...)}
}

// Name returns the function name s calls.
func (s Stream[Req, Item]) Name() string { return s.e.name }

// Side says where code runs: in a Client making a call or in a Mux serving it.
type Side uint8

// The sides of a call.
const (
	SideClient Side = iota + 1
	SideServer
)

// String returns "client" or "server".
func (s Side) String() string {
	switch s {
	case SideClient:
		return "client"
	case SideServer:
		return "server"
	}
	return "unknown"
}

// CallInfo describes one call, as interceptors on both sides see it and as a
// handler reads it with CallInfoFromContext.
type CallInfo struct {
	Side     Side
	Queue    string // the request queue
	Function string
	// ID is the request's id, unique among the calls of one client; ""
	// for requests of classic clients and calls made WithClassicServer.
	ID       string
	Deadline time.Time // zero when the call has none
	// Attempts is, on the client once the call returns, how many times its
	// request was sent: more than one after retries (WithRetries) or the
	// resend of a response Redis lost (WithDedupe). On the server it is the
	// attempt of the request being served, 1 for a first send.
	Attempts int
	// Meta is the request's metadata. On the server it is what the caller
	// sent; do not modify it. On the client it is what the call sends: an
	// interceptor may set a new map, not modify the one it finds.
	Meta map[string]string
	// Sent is when the client sent the request, by its clock, on the server
	// side; zero where the client did not say (classic clients).
	Sent time.Time
	// Stream says the call is of a stream endpoint (NewStream); Items
	// counts the items it has sent (server) or received (client) so far,
	// all of them once the call returns.
	Stream bool
	Items  int64

	next CallFunc // the innermost step: send the request, or run the handler
}

// CallFunc is one step of a call as interceptors see it, untyped: on a
// Client it sends req, the Req passed to Call, and returns the decoded Resp;
// on a Mux it runs the handler with req, the decoded Req, and returns its
// Resp. Errors are as Call returns them and as handlers return them.
type CallFunc func(ctx context.Context, info *CallInfo, req any) (any, error)

// Interceptor wraps the calls of a Client or a Mux (WithInterceptors): it
// may observe them, change the context or the request, or answer without
// calling next, for example with an *Error to refuse a call.
type Interceptor func(next CallFunc) CallFunc

// chain wraps last in interceptors, the first outermost; a nil last calls
// the call's own innermost step.
func chain(interceptors []Interceptor, last CallFunc) CallFunc {
	if last == nil {
		last = func(ctx context.Context, info *CallInfo, req any) (any, error) { return info.next(ctx, info, req) }
	}
	for i := len(interceptors) - 1; i >= 0; i-- {
		last = interceptors[i](last)
	}
	return last
}

type callInfoKey struct{}

// CallInfoFromContext returns the call a handler serves, from the context it
// was given, or nil for other contexts. It must not be modified.
func CallInfoFromContext(ctx context.Context) *CallInfo {
	info, _ := ctx.Value(callInfoKey{}).(*CallInfo)
	return info
}

// NewIncomingContext returns a context that carries info as a handler's
// context does, for calling a handler directly in tests: CallInfoFromContext
// and IncomingMeta read it. It does not set a deadline; see
// redisrpctest.HandlerContext for one that does.
func NewIncomingContext(ctx context.Context, info CallInfo) context.Context {
	info.Side = SideServer
	return context.WithValue(ctx, callInfoKey{}, &info)
}

type outgoingMetaKey struct{}

// WithOutgoingMeta returns a context whose calls send meta as the request's
// metadata (for example a W3C traceparent). It replaces metadata set before.
// The server's handler reads it with IncomingMeta.
func WithOutgoingMeta(ctx context.Context, meta map[string]string) context.Context {
	return context.WithValue(ctx, outgoingMetaKey{}, meta)
}

// OutgoingMeta returns the metadata that calls made with ctx send, or nil.
func OutgoingMeta(ctx context.Context) map[string]string {
	m, _ := ctx.Value(outgoingMetaKey{}).(map[string]string)
	return m
}

// IncomingMeta returns the metadata the caller sent with the request a
// handler serves, or nil. The map must not be modified. A handler's own
// calls do not send it on unless their Client is made WithMetaForwarding.
func IncomingMeta(ctx context.Context) map[string]string {
	if info := CallInfoFromContext(ctx); info != nil && info.Side == SideServer {
		return info.Meta
	}
	return nil
}

// LogCalls returns an interceptor that logs every call to l when it ends:
// side, queue, function, request id, duration and, for failures, the code
// and error. Calls that succeed are logged at level Info, failures at Warn.
func LogCalls(l *slog.Logger) Interceptor {
	return func(next CallFunc) CallFunc {
		return func(ctx context.Context, info *CallInfo, req any) (any, error) {
			start := time.Now()
			resp, err := next(ctx, info, req)
			attrs := []slog.Attr{
				slog.String("side", info.Side.String()), slog.String("queue", info.Queue), slog.String("function", info.Function),
				slog.String("id", info.ID), slog.Duration("took", time.Since(start)),
			}
			if err == nil {
				l.LogAttrs(ctx, slog.LevelInfo, "redisrpc: call", attrs...)
			} else {
				l.LogAttrs(ctx, slog.LevelWarn, "redisrpc: call failed", append(attrs, slog.String("code", string(CodeOf(err))), slog.String("err", err.Error()))...)
			}
			return resp, err
		}
	}
}
