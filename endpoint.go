package redisrpc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/redisrpc/redisrpc/internal/wire"
)

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

// encode lays out req as the arguments of a function call.
func (e Endpoint[Req, Resp]) encode(req Req) (wire.FunctionCall, error) {
	fc := wire.FunctionCall{Name: e.name}
	if e.name == "" {
		return fc, fmt.Errorf("redisrpc: call of a zero Endpoint; make endpoints with NewEndpoint")
	}
	if e.style == argsNone {
		return fc, nil
	}
	b, err := json.Marshal(req)
	if err != nil {
		return fc, fmt.Errorf("redisrpc: %s: encoding the request: %w", e.name, err)
	}
	switch e.style {
	case argsNamed:
		if b[0] != '{' {
			return fc, fmt.Errorf("redisrpc: %s: WithNamedArgs needs a request that encodes as a JSON object, got %.40s", e.name, b)
		}
		if !bytes.Equal(b, []byte("{}")) {
			fc.Kwargs = b
		}
	case argsSpread:
		if bytes.Equal(b, []byte("null")) {
			break // a nil slice: no arguments
		}
		if b[0] != '[' {
			return fc, fmt.Errorf("redisrpc: %s: WithPositionalArgs needs a request that encodes as a JSON array, got %.40s", e.name, b)
		}
		if !bytes.Equal(b, []byte("[]")) {
			fc.Args = b
		}
	default:
		fc.Args = make([]byte, 0, len(b)+2)
		fc.Args = append(append(append(fc.Args, '['), b...), ']')
	}
	return fc, nil
}

// decodeArgs maps the arguments of a call onto a Req, following the table in
// the package documentation.
func decodeArgs[Req any](fc *wire.FunctionCall) (Req, error) {
	var req Req
	data, alt, err := fc.ArgsJSON()
	if err != nil || data == nil {
		return req, err
	}
	err = json.Unmarshal(data, &req)
	if err == nil || alt == nil {
		return req, err
	}
	// One positional argument that does not fit Req may still be the whole
	// argument list of a slice-typed Req, as WithPositionalArgs sends it.
	var whole Req
	if json.Unmarshal(alt, &whole) == nil {
		return whole, nil
	}
	return req, err
}
