//lint:file-ignore SA5008 malformed and odd struct tags are inputs here, on purpose
//lint:file-ignore U1000 unused fields and types are inputs here too

package jsoncodec_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/redisrpc/redisrpc/internal/jsoncodec"
)

type rvInner struct{ X int }
type rvunexp struct{ Y int }
type RVEmbedUnexpPtr struct {
	*rvunexp
	Z int
}
type RVKey struct{ Key string }
type RVSmall struct {
	A int8
	B string
}
type RVValRecv struct{ S string }

func (v RVValRecv) UnmarshalJSON(b []byte) error { return errors.New("value receiver called") }

type RVHolder struct{ V RVValRecv }
type RVAny struct{ A any }
type RVConflictA struct{ Name string }
type RVConflictB struct{ Name string }
type RVConflict struct {
	RVConflictA
	RVConflictB
}
type RVTagged struct {
	A int `json:"a"`
	B int `json:"A"`
}
type RVTextKey string

func (k *RVTextKey) UnmarshalText(b []byte) error { *k = RVTextKey("k:" + string(b)); return nil }

type RVIface interface{ M() }
type RVIfaceHolder struct{ I RVIface }
type rvImpl struct{ X int }

func (*rvImpl) M() {}

type RVNull struct {
	N int
	S []int
	M map[string]int
	P *int
}

type rvCase struct {
	name string
	data string
	make func() any
}

func rvCases() []rvCase {
	one := 1
	return []rvCase{
		{"kelvin fold", `{"\u212aey":"x"}`, func() any { return new(RVKey) }},
		{"long s fold", `{"\u017fey":"x"}`, func() any { return new(RVKey) }}, // no s in Key; control
		{"KEY upper", `{"KEY":"x"}`, func() any { return new(RVKey) }},
		{"dup keys case", `{"key":"a","Key":"b","KEY":"c"}`, func() any { return new(RVKey) }},
		{"embedded ptr unexported", `{"Y":1,"Z":2}`, func() any { return new(RVEmbedUnexpPtr) }},
		{"overflow int8 continues", `{"A":300,"B":"after"}`, func() any { return new(RVSmall) }},
		{"wrong type continues", `{"A":"s","B":"after"}`, func() any { return new(RVSmall) }},
		{"float into int", `{"A":1.0,"B":"x"}`, func() any { return new(RVSmall) }},
		{"exp into int", `{"A":1e2}`, func() any { return new(RVSmall) }},
		{"value receiver unmarshaler", `{"V":{"S":"x"}}`, func() any { return new(RVHolder) }},
		{"interface preset ptr", `{"A":{"X":5}}`, func() any { return &RVAny{A: &rvInner{}} }},
		{"interface preset ptr null", `{"A":null}`, func() any { return &RVAny{A: &rvInner{X: 3}} }},
		{"interface preset value", `{"A":{"X":5}}`, func() any { return &RVAny{A: rvInner{}} }},
		{"non-empty iface preset", `{"I":{"X":7}}`, func() any { return &RVIfaceHolder{I: &rvImpl{}} }},
		{"non-empty iface nil", `{"I":{"X":7}}`, func() any { return &RVIfaceHolder{} }},
		{"conflicting embedded", `{"Name":"n"}`, func() any { return new(RVConflict) }},
		{"tag exact vs fold", `{"a":1,"A":2}`, func() any { return new(RVTagged) }},
		{"tag fold only", `{"A":2,"a":1}`, func() any { return new(RVTagged) }},
		{"text key map", `{"a":1}`, func() any { return new(map[RVTextKey]int) }},
		{"int key plus", `{"+1":"a"}`, func() any { return new(map[int]string) }},
		{"int key overflow", `{"300":"a"}`, func() any { return new(map[uint8]string) }},
		{"int key bad", `{"x":"a"}`, func() any { return new(map[int]string) }},
		{"null into non-pointer", `{"N":null,"S":null,"M":null,"P":null}`, func() any { return &RVNull{N: 1, S: []int{1}, M: map[string]int{"a": 1}, P: &one} }},
		{"invalid utf8", "\"a\xffb\"", func() any { return new(string) }},
		{"lone surrogate", `"\ud800x"`, func() any { return new(string) }},
		{"raw control char", "\"a\x01b\"", func() any { return new(string) }},
		{"trailing data", `{} x`, func() any { return new(map[string]any) }},
		{"trailing second value", `1 2`, func() any { return new(int) }},
		{"leading zero", `01`, func() any { return new(int) }},
		{"leading zero any", `01`, func() any { return new(any) }},
		{"plus number", `+1`, func() any { return new(int) }},
		{"dot number", `.5`, func() any { return new(float64) }},
		{"trailing dot", `1.`, func() any { return new(float64) }},
		{"minus zero uint", `-0`, func() any { return new(uint64) }},
		{"huge float", `1e400`, func() any { return new(float64) }},
		{"huge float32", `1e40`, func() any { return new(float32) }},
		{"uint64 overflow", `18446744073709551616`, func() any { return new(uint64) }},
		{"json.Number string ok", `"12"`, func() any { return new(json.Number) }},
		{"json.Number string bad", `"abc"`, func() any { return new(json.Number) }},
		{"json.Number bool", `true`, func() any { return new(json.Number) }},
		{"base64 unpadded", `"AQ"`, func() any { return new([]byte) }},
		{"base64 url", `"-_8="`, func() any { return new([]byte) }},
		{"base64 newline", `"AQ\nI="`, func() any { return new([]byte) }},
		{"array short", `[1]`, func() any { return &[3]int{7, 8, 9} }},
		{"array long", `[1,2,3,4]`, func() any { return new([2]int) }},
		{"slice reuse", `[1]`, func() any { s := []int{7, 8, 9}; return &s }},
		{"map merge", `{"b":2}`, func() any { m := map[string]int{"a": 1}; return &m }},
		{"formfeed ws", "\f{}", func() any { return new(map[string]any) }},
		{"vtab ws", "{}\v", func() any { return new(map[string]any) }},
		{"nbsp ws", "\u00a0{}", func() any { return new(map[string]any) }},
		{"bom", "\ufeff{}", func() any { return new(map[string]any) }},
		{"empty", ``, func() any { return new(any) }},
		{"escaped key", `{"K\u0065y":"x"}`, func() any { return new(RVKey) }},
		{"bad escape", `"\x"`, func() any { return new(string) }},
		{"string into bool", `"true"`, func() any { return new(bool) }},
		{"TRUE", `TRUE`, func() any { return new(bool) }},
		{"nul literal", `nul`, func() any { return new(any) }},
		{"truex", `truex`, func() any { return new(bool) }},
		{"object into slice", `{}`, func() any { return new([]int) }},
		{"array into struct", `[]`, func() any { return new(RVKey) }},
		{"deep array", strings.Repeat("[", 10001) + strings.Repeat("]", 10001), func() any { return new(any) }},
		{"deep object", strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001), func() any { return new(any) }},
		{"deep into struct", strings.Repeat(`{"P":`, 10001) + "null" + strings.Repeat("}", 10001), func() any { return new(rvDeep) }},
		{"unexported field", `{"x":1}`, func() any { return new(rvLower) }},
		{"dash comma tag", `{"-":1}`, func() any { return new(rvDash) }},
		{"omitempty name", `{"omitempty":1}`, func() any { return new(rvOmit) }},
		{"embedded non-struct", `{"RVMyInt":4}`, func() any { return new(rvEmbInt) }},
		{"ptr to ptr preset", `5`, func() any { x := 1; p := &x; return &p }},
		{"null into ptr ptr", `null`, func() any { x := 1; p := &x; return &p }},
		{"int into any map", `{"a":1}`, func() any { m := map[string]any{"a": "s"}; return &m }},
		{"number into string field", `{"B":5}`, func() any { return new(RVSmall) }},
		{"time bad", `"2020-13-01T00:00:00Z"`, func() any { return new(rvTime) }},
	}
}

type rvDeep struct{ P *rvDeep }

//lint:ignore U1000 an unexported field, which decoding leaves alone
type rvLower struct{ x int }
type rvDash struct {
	//lint:ignore SA5008 a field named "-", on purpose
	D int `json:"-,"`
}
type rvOmit struct {
	O int `json:",omitempty"`
}
type RVMyInt int
type rvEmbInt struct{ RVMyInt }
type rvTime struct{ T string }

func TestReviewDecodeAgainstStd(t *testing.T) {
	for _, c := range rvCases() {
		t.Run(c.name, func(t *testing.T) {
			want, got := c.make(), c.make()
			werr := json.Unmarshal([]byte(c.data), want)
			var gerr error
			func() {
				defer func() {
					if r := recover(); r != nil {
						gerr = errors.New("PANIC: " + strings.TrimSpace(strings.Split(string(reflect.ValueOf(r).String()), "\n")[0]))
					}
				}()
				gerr = jsoncodec.Fast{}.Unmarshal([]byte(c.data), got)
			}()
			if (werr == nil) != (gerr == nil) || werr == nil && !reflect.DeepEqual(want, got) {
				d := c.data
				if len(d) > 60 {
					d = d[:60] + "..."
				}
				t.Errorf("Unmarshal(%q) into %T:\n fast: %+v err=%v\n std:  %+v err=%v", d, want, rvDeref(got), gerr, rvDeref(want), werr)
			}
		})
	}
}

func rvDeref(v any) any {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		return rv.Elem().Interface()
	}
	return v
}
