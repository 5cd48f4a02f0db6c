package jsoncodec_test

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/redisrpc/redisrpc/internal/jsoncodec"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

// TestCheckCodec: Fast passes the checks redisrpctest gives any codec.
func TestCheckCodec(t *testing.T) { redisrpctest.CheckCodec(t, jsoncodec.Fast{}) }

type badJSON struct{}

func (badJSON) MarshalJSON() ([]byte, error) { return []byte(`{"a":`), nil }

type spacedJSON struct{}

func (spacedJSON) MarshalJSON() ([]byte, error) { return []byte(" { \"a\" : [1, 2] } "), nil }

type quotedText struct{}

func (quotedText) MarshalText() ([]byte, error) { return []byte("a\"<b>\u2028"), nil }

// TestMarshalers: what Marshalers return is checked and compacted, and what
// TextMarshalers return escaped, as encoding/json does, so that Fast's
// output is JSON whatever a type's methods write.
func TestMarshalers(t *testing.T) {
	for _, v := range []any{badJSON{}, []any{1, badJSON{}}, spacedJSON{}, map[string]any{"x": spacedJSON{}}, quotedText{},
		map[quotedText]int{{}: 1}, "\xff<&>\u2028", []byte("\xff"), 1e21, float32(0.1), math.Copysign(0, -1)} {
		want, werr := json.Marshal(v)
		got, gerr := jsoncodec.Fast{}.Marshal(v)
		if (werr == nil) != (gerr == nil) || string(got) != string(want) {
			t.Errorf("Marshal(%#v): got %s, %v; want %s, %v", v, got, gerr, want, werr)
		}
	}
}
