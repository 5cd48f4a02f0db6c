package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"
)

// The hot path encodes envelopes by appending and decodes them by slicing
// members out of a message checked once with json.Valid, so that only the
// caller's own values go through reflection. Decoders take the message as a
// string, which cannot change, so that what they return may share its memory
// rather than copy it.

// ErrMalformed wraps every failure to decode an envelope.
var ErrMalformed = errors.New("malformed message")

// RequestSize returns how many bytes AppendRequest writes for r where no
// string needs escaping (more are appended where some do), to size its
// buffer: a buffer of the right size class saves a fifth of a small call's
// allocation.
func RequestSize(r *Request) int {
	fc := &r.FunctionCall
	n := len(`{"function_call":{"name":""},"response_queue":""}`) + len(fc.Name) + len(r.ResponseQueue)
	if len(fc.Args) > 0 {
		n += len(`,"args":`) + len(fc.Args)
	} else if len(fc.Arg) > 0 {
		n += len(`,"args":[]`) + len(fc.Arg)
	}
	if len(fc.Kwargs) > 0 {
		n += len(`,"kwargs":`) + len(fc.Kwargs)
	}
	if r.ID != "" {
		n += len(`,"id":""`) + len(r.ID)
	}
	if r.Deadline != 0 {
		n += len(`,"deadline":`) + intLen(r.Deadline)
	}
	if len(r.Meta) > 0 {
		n += len(`,"meta":{}`) + len(r.Meta) - 1 // commas
		for k, v := range r.Meta {
			n += len(`"":""`) + len(k) + len(v)
		}
	}
	if r.Sent != 0 {
		n += len(`,"sent":`) + intLen(r.Sent)
	}
	if r.Attempt > 1 {
		n += len(`,"attempt":`) + intLen(int64(r.Attempt))
	}
	return n
}

// intLen returns the length of n in decimal.
func intLen(n int64) int {
	var buf [20]byte
	return len(strconv.AppendInt(buf[:0], n, 10))
}

// AppendRequest appends the JSON of r to b.
func AppendRequest(b []byte, r *Request) []byte {
	b = append(b, `{"function_call":{"name":`...)
	b = appendString(b, r.FunctionCall.Name)
	if len(r.FunctionCall.Args) > 0 {
		b = append(append(b, `,"args":`...), r.FunctionCall.Args...)
	} else if len(r.FunctionCall.Arg) > 0 {
		b = append(append(append(b, `,"args":[`...), r.FunctionCall.Arg...), ']')
	}
	if len(r.FunctionCall.Kwargs) > 0 {
		b = append(append(b, `,"kwargs":`...), r.FunctionCall.Kwargs...)
	}
	b = appendString(append(b, `},"response_queue":`...), r.ResponseQueue)
	if r.ID != "" {
		b = appendString(append(b, `,"id":`...), r.ID)
	}
	if r.Deadline != 0 {
		b = strconv.AppendInt(append(b, `,"deadline":`...), r.Deadline, 10)
	}
	if len(r.Meta) > 0 {
		meta, _ := json.Marshal(r.Meta) // a map of strings always encodes
		b = append(append(b, `,"meta":`...), meta...)
	}
	if r.Sent != 0 {
		b = strconv.AppendInt(append(b, `,"sent":`...), r.Sent, 10)
	}
	if r.Attempt > 1 {
		b = strconv.AppendInt(append(b, `,"attempt":`...), int64(r.Attempt), 10)
	}
	if r.Stream > 0 {
		b = strconv.AppendInt(append(b, `,"stream":`...), int64(r.Stream), 10)
	}
	return append(b, '}')
}

// AppendResponse appends the JSON of r to b. The id comes first so that a
// client can route the response without decoding it (ResponseID).
func AppendResponse(b []byte, r *Response) []byte {
	b = append(b, '{')
	if r.ID != "" {
		b = append(appendString(append(b, `"id":`...), r.ID), ',')
	}
	if r.End {
		b = append(strconv.AppendInt(append(b, `"seq":`...), r.Seq, 10), ',')
	}
	if r.Failed() {
		b = append(append(b, `"exception":`...), r.Exception...)
		if r.Code != "" {
			b = appendString(append(b, `,"code":`...), r.Code)
		}
		if len(r.Details) > 0 {
			b = append(append(b, `,"details":`...), r.Details...)
		}
	} else {
		rv := r.ReturnValue
		if len(rv) == 0 {
			rv = []byte("null")
		}
		b = append(append(b, `"return_value":`...), rv...)
	}
	return append(b, '}')
}

// DecodeRequest decodes a request. Where the message is an object with a
// string response_queue, r.ResponseQueue is set even when err is not nil, so
// that the caller can answer.
func DecodeRequest(msg string) (r Request, err error) {
	data := stringBytes(msg)
	var fc []byte
	err = eachMember(data, true, func(key, value []byte) error {
		switch string(key) {
		case `"function_call"`:
			fc = value
		case `"response_queue"`:
			return decodeString(value, &r.ResponseQueue, "response_queue")
		case `"id"`:
			return decodeString(value, &r.ID, "id")
		case `"deadline"`:
			return decodeMillis(value, &r.Deadline, errBadDeadline)
		case `"sent"`:
			return decodeMillis(value, &r.Sent, errBadSent)
		case `"attempt"`:
			return decodeAttempt(value, &r.Attempt)
		case `"stream"`:
			return decodeWindow(value, &r.Stream)
		case `"meta"`:
			if string(value) != "null" {
				var meta map[string]string // not r.Meta, which would put r on the heap
				if err := json.Unmarshal(value, &meta); err != nil {
					return fmt.Errorf("%w: meta is not an object of strings", ErrMalformed)
				}
				r.Meta = meta
			}
		}
		return nil
	})
	if err != nil {
		return r, err
	}
	if fc == nil {
		return r, fmt.Errorf("%w: no function_call", ErrMalformed)
	}
	return r, eachMember(fc, false, func(key, value []byte) error {
		switch string(key) {
		case `"name"`:
			return decodeString(value, &r.FunctionCall.Name, "function_call.name")
		case `"args"`:
			r.FunctionCall.Args = value
		case `"kwargs"`:
			r.FunctionCall.Kwargs = value
		}
		return nil
	})
}

// DecodeResponse decodes a response.
func DecodeResponse(msg string) (r Response, err error) {
	err = eachMember(stringBytes(msg), true, func(key, value []byte) error {
		switch string(key) {
		case `"return_value"`:
			r.ReturnValue = value
		case `"exception"`:
			r.Exception = value
		case `"code"`:
			if string(value) != "null" {
				return decodeString(value, &r.Code, "code")
			}
		case `"details"`:
			if string(value) != "null" {
				r.Details = value
			}
		case `"id"`:
			return decodeString(value, &r.ID, "id")
		case `"seq"`:
			r.End = true
			return decodeSeq(value, &r.Seq)
		}
		return nil
	})
	return r, err
}

// ResponseID returns the id of a response cheaply: from the front of the
// message when it starts as AppendResponse writes it, else by decoding it.
func ResponseID(msg string) (string, error) {
	const prefix = `{"id":"`
	if strings.HasPrefix(msg, prefix) {
		rest := msg[len(prefix):]
		for i := 0; i < len(rest); i++ {
			if c := rest[i]; c == '"' {
				return rest[:i], nil
			} else if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
				break
			}
		}
	}
	r, err := DecodeResponse(msg)
	return r.ID, err
}

func decodeString(raw []byte, dst *string, name string) error {
	if len(raw) >= 2 && raw[0] == '"' && bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		// No escapes, valid UTF-8: the bytes are the string, and they are
		// a decoder's message, which cannot change.
		*dst = unsafe.String(&raw[1], len(raw)-2)
		return nil
	}
	var s string // not dst, so that what dst points into stays off the heap
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return fmt.Errorf("%w: %s is not a string", ErrMalformed, name)
	}
	*dst = s
	return nil
}

// MaxDeadline is the latest deadline a request may carry, in Unix
// milliseconds: 2^53-1, the largest integer every JSON decoder reads exactly
// (a day in the year 287396).
const MaxDeadline = 1<<53 - 1

// decodeMillis reads a deadline or a time sent: null for none, else a number
// of Unix milliseconds from 1 to MaxDeadline, whose fraction is dropped.
// Anything else, zero and negative numbers included, is malformed (bad), so
// that a request is never run with no deadline, or dropped as late, by
// mistake.
func decodeMillis(raw []byte, dst *int64, bad error) error {
	if string(raw) == "null" {
		return nil
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		var f float64 // 1.764e12 is a number too
		if json.Unmarshal(raw, &f) != nil || f < 1 || f > MaxDeadline {
			return bad
		}
		n = int64(f)
	}
	if n < 1 || n > MaxDeadline {
		return bad
	}
	*dst = n
	return nil
}

// MaxAttempt bounds a request's attempt member.
const MaxAttempt = 1000

// decodeAttempt decodes a request's attempt: a whole number from 1 to
// MaxAttempt, or null.
func decodeAttempt(raw []byte, dst *int) error {
	return decodeRange(raw, dst, MaxAttempt, errBadAttempt)
}

// decodeRange decodes a whole number from 1 to most, or null, into dst;
// bad is its error otherwise.
func decodeRange(raw []byte, dst *int, most int, bad error) error {
	if string(raw) == "null" {
		return nil
	}
	n, err := strconv.Atoi(string(raw))
	if err != nil || n < 1 || n > most {
		return bad
	}
	*dst = n
	return nil
}

// Deadline returns t as a request's deadline: Unix milliseconds, at least 1
// and at most MaxDeadline.
func Deadline(t time.Time) int64 {
	if t.After(time.UnixMilli(MaxDeadline)) {
		return MaxDeadline
	}
	return max(t.UnixMilli(), 1)
}

var (
	errBadDeadline = fmt.Errorf("%w: deadline is not a time in Unix milliseconds from 1 to 2^53-1", ErrMalformed)
	errBadSent     = fmt.Errorf("%w: sent is not a time in Unix milliseconds from 1 to 2^53-1", ErrMalformed)
	errBadAttempt  = fmt.Errorf("%w: attempt is not a whole number from 1 to %d", ErrMalformed, MaxAttempt)
)

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			q, _ := json.Marshal(s) // the rare string that needs escaping
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// eachMember calls fn with the quoted key and the raw value of each member of
// the JSON object data. With check, it also checks that data is valid JSON, in
// the same pass, and stops at the first fault; without, data must be valid.
func eachMember(data []byte, check bool, fn func(key, value []byte) error) error {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		if check && !Valid(data) {
			return errNotJSON
		}
		return errNotObject
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return trailing(data, i, check)
	}
	for i < len(data) {
		var keyEnd, valEnd int
		ok := true
		if check {
			if data[i] != '"' {
				return errNotJSON
			}
			keyEnd, ok = scanString(data, i)
		} else {
			keyEnd = skipValue(data, i)
		}
		key := data[i:keyEnd]
		i = skipSpace(data, keyEnd)
		if !ok || check && (i >= len(data) || data[i] != ':') {
			return errNotJSON
		}
		i = skipSpace(data, i+1)
		if check {
			valEnd, ok = scanValue(data, i, 1)
			if !ok {
				return errNotJSON
			}
		} else {
			valEnd = skipValue(data, i)
		}
		if bytes.IndexByte(key, '\\') >= 0 {
			var k string
			json.Unmarshal(key, &k)
			key, _ = json.Marshal(k) // escapes undone, so "\u0069d" is "id"
		}
		if err := fn(key, data[i:valEnd]); err != nil {
			return err
		}
		i = skipSpace(data, valEnd)
		if i < len(data) && data[i] == '}' {
			return trailing(data, i, check)
		}
		if check && (i >= len(data) || data[i] != ',') {
			return errNotJSON
		}
		i = skipSpace(data, i+1) // past ','
	}
	if check {
		return errNotJSON
	}
	return errTruncated
}

var (
	errNotJSON   = fmt.Errorf("%w: not JSON", ErrMalformed)
	errNotObject = fmt.Errorf("%w: not an object", ErrMalformed)
	errTruncated = fmt.Errorf("%w: truncated object", ErrMalformed)
)

// trailing checks, with check, that only space follows the brace at i.
func trailing(data []byte, i int, check bool) error {
	if check && skipSpace(data, i+1) != len(data) {
		return errNotJSON
	}
	return nil
}

// skipValue returns the index just past the JSON value starting at i, and at
// most len(data) whatever data holds.
func skipValue(data []byte, i int) int {
	depth := 0
	for ; i < len(data); i++ {
		switch c := data[i]; c {
		case '"':
			for i++; i < len(data); i++ {
				if i = skipPlain(data, i); i >= len(data) || data[i] == '"' {
					break
				}
				if data[i] == '\\' {
					i++
				}
			}
			if i >= len(data) { // unterminated: possible where the input was not validated
				return len(data)
			}
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i // the end of a scalar member
			}
			depth--
			if depth == 0 {
				return i + 1
			}
		case ',', ' ', '\t', '\r', '\n', ':':
			if depth == 0 {
				return i
			}
		}
	}
	return i
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n') {
		i++
	}
	return i
}

// SplitArray returns the elements of the valid JSON array data.
func SplitArray(data []byte) [][]byte {
	var out [][]byte
	i := skipSpace(data, 0) + 1 // past '['
	for i = skipSpace(data, i); i < len(data) && data[i] != ']'; {
		end := skipValue(data, i)
		out = append(out, data[i:end])
		i = skipSpace(data, end)
		if i < len(data) && data[i] == ',' {
			i = skipSpace(data, i+1)
		}
	}
	return out
}

// stringBytes returns the bytes of s without copying, for the decoders here,
// which only read them. The result must never be written to.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// PeekReply returns the response queue and id of a request without checking
// or copying the rest, for requests too large to decode. Both are "" where
// they cannot be read.
func PeekReply(msg string) (queue, id string) {
	data := stringBytes(msg)
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return "", ""
	}
	for i = skipSpace(data, i+1); i < len(data) && data[i] == '"'; {
		end := skipValue(data, i)
		key := data[i:end]
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return queue, id
		}
		i = skipSpace(data, i+1)
		end = skipValue(data, i)
		if end <= i || end > len(data) {
			return queue, id
		}
		switch string(key) {
		case `"response_queue"`:
			decodeString(data[i:end], &queue, "")
		case `"id"`:
			decodeString(data[i:end], &id, "")
		}
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ',' {
			return queue, id
		}
		i = skipSpace(data, i+1)
	}
	return queue, id
}
