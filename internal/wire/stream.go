package wire

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Streams. A request with "stream": W calls a stream endpoint, and allows
// its server W items unread at once. Its server answers on the response
// queue, each message with the request's id first:
//
//	{"id":"7","beat":10000}         the handler runs; the server's heartbeat, ms
//	{"id":"7","seq":0,"item":...}   item 0, then 1, 2, ...
//	{"id":"7","beat":10000}         at least every third of the heartbeat
//	{"id":"7","seq":3,"return_value":null}   the end, after 3 items; or an exception
//
// The caller grants more items as it reads them, pushing to the list Credit
// how many it has read: the server sends item n while n < W + the most
// granted. It ends the stream early by pushing "cancel".

// MaxWindow bounds a stream's window.
const MaxWindow = 100_000

var errBadWindow = fmt.Errorf("%w: stream is not a whole number from 1 to %d", ErrMalformed, MaxWindow)

func decodeWindow(raw []byte, dst *int) error { return decodeRange(raw, dst, MaxWindow, errBadWindow) }

func decodeSeq(raw []byte, dst *int64) error {
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("%w: seq is not a whole number", ErrMalformed)
	}
	*dst = n
	return nil
}

// Credit is the list where the caller of the stream id, answered on reply,
// grants items and cancels: inside the response queue's namespace.
func Credit(reply, id string) string { return reply + ":credit:" + id }

// Cancel is the grant that ends a stream.
const Cancel = "cancel"

// AppendItem appends item seq of the stream id, whose JSON is item.
func AppendItem(b []byte, id string, seq int64, item []byte) []byte {
	b = appendString(append(b, `{"id":`...), id)
	b = strconv.AppendInt(append(b, `,"seq":`...), seq, 10)
	return append(append(append(b, `,"item":`...), item...), '}')
}

// AppendBeat appends a beat of the stream id, saying the server's heartbeat.
func AppendBeat(b []byte, id string, heartbeatMS int64) []byte {
	b = appendString(append(b, `{"id":`...), id)
	return append(strconv.AppendInt(append(b, `,"beat":`...), heartbeatMS, 10), '}')
}

// Message kinds of a stream.
const (
	KindItem = iota + 1
	KindBeat
	KindEnd
)

// StreamMessage is a message of a stream, decoded.
type StreamMessage struct {
	Kind int
	Seq  int64  // of an item, or the count of items at the end
	Item []byte // an item's JSON
	Beat int64  // the heartbeat a beat says, ms
	End  Response
}

// DecodeStream decodes a message of a stream.
func DecodeStream(msg string) (m StreamMessage, err error) {
	seen := false
	err = eachMember(stringBytes(msg), true, func(key, value []byte) error {
		switch string(key) {
		case `"item"`:
			m.Kind, m.Item = KindItem, value
		case `"beat"`:
			m.Kind = KindBeat
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 1 {
				return fmt.Errorf("%w: beat is not a positive whole number", ErrMalformed)
			}
			m.Beat = n
		case `"seq"`:
			seen = true
			return decodeSeq(value, &m.Seq)
		}
		return nil
	})
	if err != nil {
		return m, err
	}
	switch {
	case m.Kind == KindItem && !seen:
		return m, fmt.Errorf("%w: an item without seq", ErrMalformed)
	case m.Kind == 0:
		m.End, err = DecodeResponse(msg)
		if err == nil && !m.End.End && !m.End.Failed() {
			// A failure without seq ends a stream that never started (no such
			// function, bad arguments); a result without it is a call's.
			return m, errNoEnd
		}
		m.Kind, m.Seq = KindEnd, m.End.Seq
	}
	return m, err
}

var errNoEnd = errors.New("a response without seq to a stream: the server does not stream (a classic or older one)")

// IsBeat reports cheaply whether msg, a message of the stream id, is a beat
// as AppendBeat writes it; BeatOf returns what it says.
func IsBeat(msg, id string) bool {
	const prefix = `{"id":"`
	rest, ok := strings.CutPrefix(msg, prefix)
	if !ok {
		return false
	}
	rest, ok = strings.CutPrefix(rest, id)
	return ok && strings.HasPrefix(rest, `","beat":`)
}

// BeatOf returns the heartbeat of msg, a beat (IsBeat), in ms; 0 where it says none.
func BeatOf(msg string) int64 {
	i := strings.Index(msg, `","beat":`)
	if i < 0 {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSuffix(msg[i+len(`","beat":`):], "}"), 10, 64)
	return max(n, 0)
}
