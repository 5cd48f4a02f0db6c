package jsoncodec_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc/internal/jsoncodec"
	"github.com/redisrpc/redisrpc/internal/wire"
)

// The types the fuzz test decodes into: what requests and responses
// commonly hold.

type Base struct {
	ID   int64  `json:"id"`
	Kind string `json:"kind,omitempty"`
}

type Inner struct {
	Note string `json:"note"`
	Qty  *int   `json:"qty,omitempty"`
}

type Order struct {
	Base                       // embedded: its fields are the order's
	*Inner                     // embedded pointer
	Item      string           `json:"item"`
	Quantity  int              `json:"quantity"`
	Price     float64          `json:"price,omitempty"`
	Small     int8             `json:"small"`
	Big       uint64           `json:"big"`
	Count     int              `json:"count,string"`
	Flag      bool             `json:"flag,string"`
	Ratio     float32          `json:"ratio,string"`
	Label     string           `json:"label,string"`
	Tags      []string         `json:"tags"`
	Lines     []Line           `json:"lines"`
	Attrs     map[string]int   `json:"attrs"`
	Extra     map[string]any   `json:"extra"`
	Any       any              `json:"any"`
	Num       json.Number      `json:"num"`
	Raw       json.RawMessage  `json:"raw"`
	Ptr       *string          `json:"ptr"`
	Fixed     [3]int           `json:"fixed"`
	Custom    Cents            `json:"custom"`
	CustomPtr *Cents           `json:"custom_ptr"`
	Level     Level            `json:"level"`
	ByLevel   map[Level]string `json:"by_level"`
	Skipped   string           `json:"-"`
	Folded    string           // no tag: matched case-insensitively, "folded"
	FOLDED2   string           `json:"Folded2"`
}

// Plain is an Order without ",string" fields, which Fast decodes with
// goccy/go-json.
type Plain struct {
	Base
	*Inner
	Item      string           `json:"item"`
	Quantity  int              `json:"quantity"`
	Price     float64          `json:"price,omitempty"`
	Small     int8             `json:"small"`
	Big       uint64           `json:"big"`
	Tags      []string         `json:"tags"`
	Lines     []Line           `json:"lines"`
	Attrs     map[string]int   `json:"attrs"`
	Extra     map[string]any   `json:"extra"`
	Any       any              `json:"any"`
	Num       json.Number      `json:"num"`
	Raw       json.RawMessage  `json:"raw"`
	Ptr       *string          `json:"ptr"`
	Fixed     [3]int           `json:"fixed"`
	Custom    Cents            `json:"custom"`
	CustomPtr *Cents           `json:"custom_ptr"`
	Level     Level            `json:"level"`
	ByLevel   map[Level]string `json:"by_level"`
	Skipped   string           `json:"-"`
	Folded    string
	FOLDED2   string `json:"Folded2"`
}

type Line struct {
	SKU string  `json:"sku"`
	N   int     `json:"n"`
	P   *Line   `json:"p,omitempty"`
	V   []any   `json:"v,omitempty"`
	F   float64 `json:"f"`
}

// Cents is a Marshaler and Unmarshaler: a number of cents written as a
// string of units, "12.34".
type Cents int64

func (c Cents) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf(`"%d.%02d"`, c/100, c%100)), nil
}

func (c *Cents) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	var units, cents int64
	if _, err := fmt.Sscanf(s, "%d.%02d", &units, &cents); err != nil {
		return errors.New("cents: want units.cents")
	}
	*c = Cents(units*100 + cents)
	return nil
}

// Level is a TextMarshaler and TextUnmarshaler, as a value and as a map key.
type Level int

func (l Level) MarshalText() ([]byte, error) {
	if l < 0 || l > 2 {
		return nil, errors.New("level: out of range")
	}
	return []byte([]string{"low", "mid", "high"}[l]), nil
}

func (l *Level) UnmarshalText(b []byte) error {
	switch string(b) {
	case "low":
		*l = 0
	case "mid":
		*l = 1
	case "high":
		*l = 2
	default:
		return errors.New("level: want low, mid or high")
	}
	return nil
}

type Times struct {
	At    time.Time  `json:"at"`
	Until *time.Time `json:"until,omitempty"`
}

// targets are the values decoded into, each made anew.
var targets = []struct {
	name string
	make func() any
}{
	{"Order", func() any { return new(Order) }},
	{"Plain", func() any { return new(Plain) }},
	{"[]Line", func() any { return new([]Line) }},
	{"any", func() any { return new(any) }},
	{"map[string]any", func() any { return new(map[string]any) }},
	{"[]any", func() any { return new([]any) }},
	{"string", func() any { return new(string) }},
	{"float64", func() any { return new(float64) }},
	{"int", func() any { return new(int) }},
	{"uint8", func() any { return new(uint8) }},
	{"*int", func() any { return new(*int) }},
	{"bool", func() any { return new(bool) }},
	{"json.Number", func() any { return new(json.Number) }},
	{"json.RawMessage", func() any { return new(json.RawMessage) }},
	{"map[Level]int", func() any { return new(map[Level]int) }},
	{"Cents", func() any { return new(Cents) }},
	{"Times", func() any { return new(Times) }},
	{"[]byte", func() any { return new([]byte) }},
	{"[2]string", func() any { return new([2]string) }},
}

var seeds = []string{
	`{"id":7,"kind":"retail","note":"n","qty":3,"item":"apple","quantity":2,"price":1.5,"small":-3,"big":18446744073709551615,
	  "count":"12","flag":"true","ratio":"0.25","label":"\"x\"","tags":["a","b"],"lines":[{"sku":"s","n":1,"p":{"sku":"t"},"v":[1,"x",null]}],
	  "attrs":{"a":1},"extra":{"k":[1,{"z":true}]},"any":{"x":[1.5e3]},"num":12345678901234567890,"raw":{"a": [1, 2]},
	  "ptr":"p","fixed":[1,2,3],"custom":"12.34","custom_ptr":"0.05","level":"mid","by_level":{"low":"l","high":"h"},"-":"dash","folded":"f","FOLDED2":"g"}`,
	`{"ITEM":"case","Item":"folded","item":"last","quantity":1,"quantity":2}`,
	`{"small":128}`, `{"big":-1}`, `{"count":12}`, `{"count":"x"}`, `{"flag":"yes"}`, `{"label":"plain"}`, `{"custom":12}`,
	`{"level":"max"}`, `{"by_level":{"max":"x"}}`, `{"fixed":[1,2,3,4]}`, `{"fixed":[1]}`, `{"num":"12"}`, `{"num":1e400}`,
	`{"price":1e400}`, `{"item":"\u00e9\ud83d\ude00\u0000\ud800"}`, "{\"item\":\"\xff\xfe\"}", `{"lines":null,"tags":[]}`,
	`[{"sku":"a","n":1},{"sku":"b","f":-0.0}]`, `{"at":"2026-12-01T20:07:22.123456789+01:00","until":"2026-12-01T20:07:22Z"}`,
	`{"at":"2026-13-01T00:00:00Z"}`, `"aGk="`, `"not base64!"`, `["a","b","c"]`, `18446744073709551616`, `-0`, `1e-400`,
	`{"a":{"b":{"c":{"d":[[[[]]]]}}}}`, `null`, `true`, `"<&>\u2028"`, `{"Extra":{"":1}}`, `{"any":-1.0e+2}`, `{"qty":null,"ptr":null}`,
}

// FuzzAgainstStd: for JSON a server would hand the codec (wire.Valid), Fast
// decodes into each target what encoding/json does, or fails where it fails;
// it keeps nothing of its input (a server reuses nothing, but a caller may);
// and it encodes what it decoded as encoding/json does, byte for byte.
func FuzzAgainstStd(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	var fast jsoncodec.Fast
	f.Fuzz(func(t *testing.T, data []byte) {
		// The fuzzer has no limit of its own on an input's time: a decoder
		// that hangs fails here, and the fuzzer keeps the input.
		hang := time.AfterFunc(10*time.Second, func() { panic(fmt.Sprintf("decoding %q took over 10 s", data)) })
		defer hang.Stop()
		// Any bytes, as strings and byte slices that values hold: invalid
		// UTF-8, control characters, HTML and line separators to escape.
		s := string(data)
		for _, v := range []any{s, []byte(s), map[string]string{s: s}, Line{SKU: s, V: []any{s}}, json.RawMessage(data)} {
			wb, werr := json.Marshal(v)
			gb, gerr := fast.Marshal(v)
			if (werr == nil) != (gerr == nil) || !bytes.Equal(gb, wb) {
				t.Fatalf("Marshal of %#v: got %s, %v; want %s, %v", v, gb, gerr, wb, werr)
			}
		}
		if !wire.Valid(data) {
			return
		}
		for _, target := range targets {
			want, got := target.make(), target.make()
			werr := json.Unmarshal(data, want)
			in := bytes.Clone(data)
			gerr := fast.Unmarshal(in, got)
			if (werr == nil) != (gerr == nil) {
				t.Fatalf("Unmarshal of %q into %s: got error %v, want %v", data, target.name, gerr, werr)
			}
			if werr != nil {
				continue
			}
			if !equal(got, want) {
				t.Fatalf("Unmarshal of %q into %s:\n got %#v\nwant %#v", data, target.name, deref(got), deref(want))
			}
			for i := range in { // what it decoded must not alias its input
				in[i] = 'X'
			}
			if !equal(got, want) {
				t.Fatalf("Unmarshal of %q into %s: the result changed with its input: got %#v, want %#v", data, target.name, deref(got), deref(want))
			}
			wb, werr := json.Marshal(want)
			gb, gerr := fast.Marshal(want)
			if (werr == nil) != (gerr == nil) || !bytes.Equal(gb, wb) {
				t.Fatalf("Marshal of %#v (from %q into %s): got %s, %v; want %s, %v", deref(want), data, target.name, gb, gerr, wb, werr)
			}
		}
	})
}

func deref(v any) any { return reflect.ValueOf(v).Elem().Interface() }

// equal compares decoded values, times by the instant and zone offset they
// name (their locations are pointers of each decoder's making).
func equal(a, b any) bool {
	if ta, ok := a.(*Times); ok {
		tb := b.(*Times)
		return sameTime(ta.At, tb.At) && (ta.Until == nil) == (tb.Until == nil) && (ta.Until == nil || sameTime(*ta.Until, *tb.Until))
	}
	return reflect.DeepEqual(a, b)
}

func sameTime(a, b time.Time) bool {
	_, oa := a.Zone()
	_, ob := b.Zone()
	return a.Equal(b) && oa == ob && strings.HasSuffix(a.String(), "UTC") == strings.HasSuffix(b.String(), "UTC")
}
