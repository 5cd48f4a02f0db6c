//lint:file-ignore SA5008 malformed and odd struct tags are inputs here, on purpose
//lint:file-ignore U1000 unused fields and types are inputs here too

package jsoncodec_test

import (
	"encoding/json"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc/internal/jsoncodec"
)

type rvCycle struct {
	Next *rvCycle `json:"next,omitempty"`
}
type rvStrOpt struct {
	I  int      `json:",string"`
	S  string   `json:",string"`
	P  *int     `json:",string"`
	F  float64  `json:",string"`
	B  bool     `json:",string"`
	SS []string `json:",string"`
}
type rvOmitZero struct {
	T time.Time `json:",omitzero"`
	N int       `json:",omitzero"`
}
type rvOmitEmptyStruct struct {
	S struct{} `json:",omitempty"`
	A [0]int   `json:",omitempty"`
	R [1]int   `json:",omitempty"`
}
type rvEmbConflict struct {
	RVConflictA
	RVConflictB
}
type rvMarshalerVal struct{}

func (rvMarshalerVal) MarshalJSON() ([]byte, error) { return []byte(`"v"`), nil }

type rvMarshalerPtr struct{}

func (*rvMarshalerPtr) MarshalJSON() ([]byte, error) { return []byte(`"p"`), nil }

type rvMHolder struct {
	V  rvMarshalerVal
	P  rvMarshalerPtr
	PP *rvMarshalerPtr
	NV *rvMarshalerVal
}
type rvErrM struct{}

func (rvErrM) MarshalJSON() ([]byte, error) { return nil, errors.New("boom") }

type rvTextM int

func (rvTextM) MarshalText() ([]byte, error) { return []byte("t"), nil }

type rvIface interface{}
type rvAnon struct {
	A struct{ X int }
	*RVExpEmb
}

func TestReviewEncodeAgainstStd(t *testing.T) {
	one := 1
	nan := math.NaN()
	cases := map[string]any{
		"string opts":        rvStrOpt{I: 1, S: "a\"b", P: &one, F: 1.5, B: true, SS: []string{"x"}},
		"string opts nil":    rvStrOpt{},
		"omitzero":           rvOmitZero{},
		"omitempty struct":   rvOmitEmptyStruct{},
		"emb conflict":       rvEmbConflict{RVConflictA{"a"}, RVConflictB{"b"}},
		"marshalers":         rvMHolder{},
		"marshalers ptr":     &rvMHolder{PP: &rvMarshalerPtr{}},
		"marshaler err":      []any{rvErrM{}},
		"text key map":       map[rvTextM]int{1: 1},
		"float key map":      map[float64]int{1.5: 1},
		"bool key map":       map[bool]int{true: 1},
		"any key map":        map[any]int{"a": 1},
		"int key order":      map[int]int{10: 1, 9: 2, -1: 3},
		"uint8 key":          map[uint8]int{200: 1},
		"nan":                nan,
		"inf32":              float32(math.Inf(1)),
		"float32 small":      float32(1e-7),
		"float64 small":      1e-7,
		"float64 1e20":       1e20,
		"float64 1e21":       1e21,
		"float32 max":        float32(math.MaxFloat32),
		"neg zero32":         float32(math.Copysign(0, -1)),
		"chan":               make(chan int),
		"func":               func() {},
		"complex":            complex(1, 2),
		"nil map":            map[string]int(nil),
		"nil slice":          []int(nil),
		"nil bytes":          []byte(nil),
		"bytes array":        [3]byte{1, 2, 3},
		"named bytes":        []rvByte{1, 2},
		"json.Number bad":    json.Number("abc"),
		"json.Number empty":  json.Number(""),
		"raw bad":            json.RawMessage("{"),
		"raw empty":          json.RawMessage(""),
		"raw spaced":         json.RawMessage(" [1, 2] "),
		"anon":               rvAnon{},
		"ptr to iface":       func() any { var i rvIface = 1; return &i }(),
		"time":               time.Date(2020, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600)),
		"time bad year":      time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		"html in key":        map[string]int{"<a>&": 1},
		"invalid utf8 key":   map[string]int{"\xff": 1},
		"u2028 in key":       map[string]int{"\u2028": 1},
		"deep slice":         rvDeepSlice(2000),
		"unexported":         struct{ a int }{1},
		"embedded ptr nil":   struct{ *RVExpEmb }{},
		"map of ptr to text": map[*rvTextMP]int{},
		"text marshal nil ptr key": func() any {
			return map[rvTextMP]int{"a": 1}
		}(),
	}
	for name, v := range cases {
		t.Run(name, func(t *testing.T) {
			want, werr := json.Marshal(v)
			got, gerr := jsoncodec.Fast{}.Marshal(v)
			if (werr == nil) != (gerr == nil) || string(got) != string(want) {
				t.Errorf("Marshal(%#v):\n fast: %s err=%v\n std:  %s err=%v", v, trunc(got), gerr, trunc(want), werr)
			}
		})
	}
}

type rvByte byte

func (rvByte) MarshalJSON() ([]byte, error) { return []byte(`"B"`), nil }

type rvTextMP string

func (p *rvTextMP) MarshalText() ([]byte, error) { return []byte("P" + string(*p)), nil }

func rvDeepSlice(n int) any {
	var v any = 1
	for range n {
		v = []any{v}
	}
	return v
}

func trunc(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

// Promise: never panics or hangs. encoding/json reports a pointer cycle.
func TestReviewEncodeCycle(t *testing.T) {
	c := &rvCycle{}
	c.Next = c
	_, werr := json.Marshal(c)
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- errors.New("panic")
			}
		}()
		_, err := jsoncodec.Fast{}.Marshal(c)
		done <- err
	}()
	select {
	case gerr := <-done:
		if (werr == nil) != (gerr == nil) {
			t.Errorf("cycle: fast err=%v, std err=%v", gerr, werr)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("cycle: Fast.Marshal still running after 10s (std: %v)", werr)
	}
}
