// Package wire holds the JSON messages of the redisrpc protocol (shared/PROTOCOL.md)
// and the rules that map classic calling conventions onto one Go value.
package wire

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
)

// Request is a call as it travels on a request queue.
type Request struct {
	FunctionCall  FunctionCall      `json:"function_call"`
	ResponseQueue string            `json:"response_queue"`
	ID            string            `json:"id,omitempty"`
	Deadline      int64             `json:"deadline,omitempty"` // Unix milliseconds
	Meta          map[string]string `json:"meta,omitempty"`
	Sent          int64             `json:"sent,omitempty"` // Unix milliseconds, the client's clock
	// Attempt numbers the sends of one call, from 1; a server that keeps
	// answers (WithDedupe) looks up those of requests sent again (2 and up).
	Attempt int `json:"attempt,omitempty"`
	// Stream, 1 to MaxWindow, asks for the results of a stream endpoint:
	// at most that many items unread at once (stream.go).
	Stream int `json:"stream,omitempty"`
}

// FunctionCall names the function and carries its arguments as raw JSON:
// Args is an array, Kwargs an object; either may be absent. Arg, set by a
// sender instead of Args, is one positional argument, which AppendRequest
// writes as the array [Arg] without copying it into one first.
type FunctionCall struct {
	Name   string          `json:"name"`
	Args   json.RawMessage `json:"args,omitempty"`
	Kwargs json.RawMessage `json:"kwargs,omitempty"`
	Arg    json.RawMessage `json:"-"`
}

// Response is the answer to one request. Exception present means failure.
type Response struct {
	ReturnValue json.RawMessage `json:"return_value,omitempty"`
	Exception   json.RawMessage `json:"exception,omitempty"`
	Code        string          `json:"code,omitempty"`
	Details     json.RawMessage `json:"details,omitempty"` // of a failure: any JSON value
	ID          string          `json:"id,omitempty"`
	// End marks the end of a stream, after Seq items (stream.go).
	End bool  `json:"-"`
	Seq int64 `json:"seq,omitempty"`
}

// Failed reports whether r carries an exception.
func (r *Response) Failed() bool { return present(r.Exception) }

// Message returns the exception as text; a non-string exception is returned as its JSON.
func (r *Response) Message() string {
	var s string
	if json.Unmarshal(r.Exception, &s) == nil {
		return s
	}
	return string(r.Exception)
}

// Success builds a successful response around an encoded result.
func Success(id string, result []byte) Response {
	if len(result) == 0 {
		result = []byte("null")
	}
	return Response{ReturnValue: result, ID: id}
}

// Failure builds a failed response.
func Failure(id, code, message string) Response {
	msg, _ := json.Marshal(message) // marshaling a string cannot fail
	return Response{Exception: msg, Code: code, ID: id}
}

// ErrBadArgs wraps every argument-mapping failure.
var ErrBadArgs = errors.New("bad arguments")

// ArgsJSON returns the JSON to decode into a handler's request value, following the
// protocol's table: nil for no arguments, the object for named arguments, the single
// element for one positional argument, the array for several. alt is what to try
// when data does not fit: for one positional argument the whole array (a slice
// type), for named arguments with one member that member's value (calc.add(number=5)
// into a number). fc must hold valid JSON, as from DecodeRequest.
func (fc *FunctionCall) ArgsJSON() (data, alt []byte, err error) {
	hasArgs, hasKwargs := present(fc.Args), present(fc.Kwargs)
	if hasKwargs && !isKind(fc.Kwargs, '{') {
		return nil, nil, fmt.Errorf("%w: kwargs is not an object", ErrBadArgs)
	}
	if hasArgs && !isKind(fc.Args, '[') {
		return nil, nil, fmt.Errorf("%w: args is not an array", ErrBadArgs)
	}
	var args [][]byte
	if hasArgs {
		args = SplitArray(fc.Args) // valid: DecodeRequest checked the whole message
	}
	hasKwargs = hasKwargs && !isEmptyObject(fc.Kwargs)
	switch {
	case len(args) > 0 && hasKwargs:
		return nil, nil, fmt.Errorf("%w: both positional and named arguments", ErrBadArgs)
	case hasKwargs:
		return fc.Kwargs, soleMember(fc.Kwargs), nil
	case len(args) == 1:
		return args[0], fc.Args, nil
	case len(args) > 1:
		return fc.Args, nil, nil
	}
	return nil, nil, nil
}

// soleMember returns the value of the valid JSON object obj's only member,
// or nil where it has more.
func soleMember(obj []byte) []byte {
	var value []byte
	n := 0
	eachMember(obj, false, func(_, v []byte) error {
		n++
		value = v
		return nil
	})
	if n != 1 {
		return nil
	}
	return value
}

// ValidResponseQueue reports whether name lies inside the namespace a server of
// queue may write to, "<queue>:rpc:", with a non-empty suffix of bounded length.
func ValidResponseQueue(queue, name string) bool {
	const rpc, maxSuffix = ":rpc:", 200
	// The prefix is compared in two parts, not built, which would allocate.
	n := len(queue) + len(rpc)
	return len(name) > n && len(name)-n <= maxSuffix && name[:len(queue)] == queue && name[len(queue):n] == rpc
}

// ResponsePrefix is the namespace of response queues of a request queue.
func ResponsePrefix(queue string) string { return queue + ":rpc:" }

// present reports whether raw holds a JSON value other than null.
func present(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && !bytes.Equal(raw, []byte("null"))
}

func isKind(raw json.RawMessage, open byte) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == open
}

func isEmptyObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) >= 2 && raw[0] == '{' && len(bytes.TrimSpace(raw[1:len(raw)-1])) == 0
}

// The codes of the protocol.
const (
	CodeInvalidArgument  = "invalid_argument"
	CodeNotFound         = "not_found"
	CodeDeadlineExceeded = "deadline_exceeded"
	CodeInternal         = "internal"
	CodeUnavailable      = "unavailable"
)

// RandomName returns n characters of A-Z0-9, the alphabet of classic
// response queues.
func RandomName(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	rand.Read(b) // never fails
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// Clip shortens a message for a log line.
func Clip(s string) string {
	const n = 200
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
