//lint:file-ignore SA5008 malformed and odd struct tags are inputs here, on purpose
//lint:file-ignore U1000 unused fields and types are inputs here too

package jsoncodec_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc/internal/jsoncodec"
)

type rvXY struct{ X, Y int }
type rvBadTag struct {
	A int `json:"a'b"`
	B int `json:"a\\b"`
	C int `json:"naïve"`
	D int `json:"x y"`
}
type rvEmbTime struct {
	time.Time
	X int
}
type rvCentsHolder struct {
	C  Cents
	CP *Cents
	L  Level
	LP *Level
}
type rvUnexpEmbedded struct {
	rvXY
	Z int
}
type RVPtrEmb struct {
	*rvXYExp
}
type rvXYExp struct{ X int }
type RVExpEmb struct{ X int }
type rvPtrExpEmb struct {
	*RVExpEmb
}
type rvDeepEmb struct {
	RVL1
	X int `json:"x"`
}
type RVL1 struct{ RVL2 }
type RVL2 struct {
	X int `json:"x"`
	Y int `json:"y"`
}
type rvJSONTagEmb struct {
	RVL2 `json:"l2"`
}
type rvIntStrKey map[rvIntKey]string
type rvIntKey int

func (k rvIntKey) MarshalText() ([]byte, error) { return []byte("k"), nil }
func (k *rvIntKey) UnmarshalText(b []byte) error {
	if string(b) != "k" {
		return errors.New("want k")
	}
	*k = 9
	return nil
}

type rvAnyMap map[string]any
type rvRawHolder struct{ R json.RawMessage }
type rvNumHolder struct{ N json.Number }
type rvIfaceSlice struct{ S []any }
type rvBytesArr struct{ B [2]byte }
type rvUnmarshalerPtrField struct{ P *rvUM }
type rvUM struct{ got string }

func (u *rvUM) UnmarshalJSON(b []byte) error { u.got = string(b); return nil }

type rvUMValue struct{ V rvUM }

func rvCases2() []rvCase {
	return []rvCase{
		{"slice reuse elements", `[{"Y":1}]`, func() any { s := make([]rvXY, 1, 2); s[0] = rvXY{X: 5}; return &s }},
		{"slice grow within cap", `[{"Y":1},{"Y":2}]`, func() any { s := make([]rvXY, 1, 2); s = append(s, rvXY{X: 7})[:1]; return &s }},
		{"map elem fresh", `{"a":{"Y":1}}`, func() any { m := map[string]rvXY{"a": {X: 5}}; return &m }},
		{"map ptr elem fresh", `{"a":{"Y":1}}`, func() any { m := map[string]*rvXY{"a": {X: 5}}; return &m }},
		{"array struct reuse", `[{"Y":1}]`, func() any { return &[2]rvXY{{X: 5}, {X: 6}} }},
		{"bad tag names", `{"a'b":1,"a\\b":2,"naïve":3,"x y":4,"A":5,"B":6}`, func() any { return new(rvBadTag) }},
		{"embedded time", `{"X":1}`, func() any { return new(rvEmbTime) }},
		{"embedded time string", `"2020-01-01T00:00:00Z"`, func() any { return new(rvEmbTime) }},
		{"null into unmarshalers", `{"C":null,"CP":null,"L":null,"LP":null}`, func() any { c := Cents(5); l := Level(2); return &rvCentsHolder{C: 1, CP: &c, L: 1, LP: &l} }},
		{"number into TextUnmarshaler", `{"L":1}`, func() any { return new(rvCentsHolder) }},
		{"unexported embedded", `{"X":1,"Y":2,"Z":3}`, func() any { return new(rvUnexpEmbedded) }},
		{"exported embedded ptr nil", `{"X":1}`, func() any { return new(rvPtrExpEmb) }},
		{"unexported embedded ptr nil", `{"X":1}`, func() any { return new(RVPtrEmb) }},
		{"unexported embedded ptr no field", `{"Q":1}`, func() any { return new(RVPtrEmb) }},
		{"depth shadow", `{"x":1,"y":2}`, func() any { return new(rvDeepEmb) }},
		{"tagged embedded", `{"l2":{"x":1},"x":2}`, func() any { return new(rvJSONTagEmb) }},
		{"text key int", `{"k":"v"}`, func() any { return new(rvIntStrKey) }},
		{"text key int bad", `{"7":"v"}`, func() any { return new(rvIntStrKey) }},
		{"raw whitespace", `{"R": [ 1 , 2 ] }`, func() any { return new(rvRawHolder) }},
		{"raw null", `{"R":null}`, func() any { return &rvRawHolder{R: json.RawMessage("1")} }},
		{"number holder neg exp", `{"N":-1.5E+3}`, func() any { return new(rvNumHolder) }},
		{"number holder str", `{"N":"-1.5E+3"}`, func() any { return new(rvNumHolder) }},
		{"number holder null", `{"N":null}`, func() any { return &rvNumHolder{N: "3"} }},
		{"number holder empty str", `{"N":""}`, func() any { return new(rvNumHolder) }},
		{"iface slice reuse", `{"S":[1]}`, func() any { return &rvIfaceSlice{S: []any{&rvXY{}}} }},
		{"bytes array", `{"B":"AQI="}`, func() any { return new(rvBytesArr) }},
		{"bytes array nums", `{"B":[1,2]}`, func() any { return new(rvBytesArr) }},
		{"bytes slice nums", `[1,2]`, func() any { return new([]byte) }},
		{"unmarshaler ptr null", `{"P":null}`, func() any { return &rvUnmarshalerPtrField{P: &rvUM{got: "x"}} }},
		{"unmarshaler value null", `{"V":null}`, func() any { return new(rvUMValue) }},
		{"unmarshaler ws", `{"V": [ 1 ] }`, func() any { return new(rvUMValue) }},
		{"escape slash", `"\/"`, func() any { return new(string) }},
		{"unicode escapes upper", `"\u00E9\uD83D\uDE00"`, func() any { return new(string) }},
		{"surrogate pair reversed", `"\uDE00\uD83D"`, func() any { return new(string) }},
		{"high surr then escape", `"\uD83D\n"`, func() any { return new(string) }},
		{"high surr then non-low", `"\uD83D\u0041"`, func() any { return new(string) }},
		{"string 0x7f", "\"\x7f\"", func() any { return new(string) }},
		{"float32 round", `3.4028235677973366e+38`, func() any { return new(float32) }},
		{"float32 subnormal", `1e-46`, func() any { return new(float32) }},
		{"int64 min", `-9223372036854775808`, func() any { return new(int64) }},
		{"int64 min-1", `-9223372036854775809`, func() any { return new(int64) }},
		{"int neg into uint", `-1`, func() any { return new(uint) }},
		{"big exp int", `1E3`, func() any { return new(int) }},
		{"zero exp any", `0e0`, func() any { return new(any) }},
		{"uintptr", `5`, func() any { return new(uintptr) }},
		{"complex", `1`, func() any { return new(complex128) }},
		{"chan", `1`, func() any { return new(chan int) }},
		{"func", `null`, func() any { return new(func()) }},
		{"map key any", `{"a":1}`, func() any { return new(map[any]int) }},
		{"map key float", `{"1.5":1}`, func() any { return new(map[float64]int) }},
		{"map key bool", `{"true":1}`, func() any { return new(map[bool]int) }},
		{"map into nil ptr map", `{"a":1}`, func() any { return new(*map[string]int) }},
		{"non pointer target", `1`, func() any { return 0 }},
		{"nil pointer target", `1`, func() any { return (*int)(nil) }},
		{"struct into map[string]string wrong", `{"a":1}`, func() any { return new(map[string]string) }},
		{"embedded pointer to unexported with data", `{"X":1,"Z":2}`, func() any { return new(RVEmbedUnexpPtr) }},
		{"big object dup", `{"A":1,"A":2,"a":3}`, func() any { return new(RVSmall) }},
		{"string into []string", `"a"`, func() any { return new([]string) }},
		{"obj into any preset map", `{"b":2}`, func() any { var a any = map[string]any{"a": 1}; return &a }},
		{"arr into any preset slice", `[2]`, func() any { var a any = []any{1, 3}; return &a }},
		{"obj into any preset ptr map", `{"b":2}`, func() any { m := map[string]any{"a": 1}; var a any = &m; return &a }},
	}
}

func TestReviewDecodeAgainstStd2(t *testing.T) {
	for _, c := range rvCases2() {
		t.Run(c.name, func(t *testing.T) {
			want, got := c.make(), c.make()
			werr := json.Unmarshal([]byte(c.data), want)
			var gerr error
			func() {
				defer func() {
					if r := recover(); r != nil {
						gerr = errors.New("PANIC")
						t.Errorf("Fast panicked: %v", r)
					}
				}()
				gerr = jsoncodec.Fast{}.Unmarshal([]byte(c.data), got)
			}()
			if (werr == nil) != (gerr == nil) || werr == nil && !reflect.DeepEqual(want, got) {
				d := c.data
				if len(d) > 60 {
					d = d[:60] + "..."
				}
				t.Errorf("Unmarshal(%q) into %T:\n fast: %+v err=%v\n std:  %+v err=%v", d, want, rvShow(got), gerr, rvShow(want), werr)
			}
		})
	}
}

func rvShow(v any) string {
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv = rv.Elem()
	}
	if rv.IsValid() && rv.CanInterface() {
		s := strings.TrimSpace(strings.ReplaceAll(fmtAny(rv.Interface()), "\n", " "))
		return s
	}
	return "<invalid>"
}

func fmtAny(v any) string {
	b, _ := json.Marshal(v)
	return string(b) + " / " + reflect.TypeOf(v).String() + " " + strings.TrimSpace(spr(v))
}

func spr(v any) string { return fmtSprintf("%#v", v) }

var fmtSprintf = fmt.Sprintf
