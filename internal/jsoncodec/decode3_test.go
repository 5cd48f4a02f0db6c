//lint:file-ignore SA5008 malformed and odd struct tags are inputs here, on purpose
//lint:file-ignore U1000 unused fields and types are inputs here too

package jsoncodec_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/redisrpc/redisrpc/internal/jsoncodec"
)

type rvF32 struct{ F float32 }
type rvMaps struct {
	A map[any]int
	F map[float32]string
	C map[complex64]int
	B map[bool]int
	S map[[2]int]int
	P map[*string]int
}

func rvCases3() []rvCase {
	return []rvCase{
		{"null ptr unmarshalers", `{"CP":null,"LP":null}`, func() any { c := Cents(5); l := Level(2); return &rvCentsHolder{CP: &c, LP: &l} }},
		{"float32 just above max rounds", `3.4028235677973366e+38`, func() any { return new(float32) }},
		{"float32 3.40282356e38", `3.40282356e38`, func() any { return new(float32) }},
		{"float32 field", `{"F":3.4028235677973362e+38}`, func() any { return new(rvF32) }},
		{"float32 neg", `-3.4028235677e+38`, func() any { return new(float32) }},
		{"float32 max exact", `3.4028234663852886e+38`, func() any { return new(float32) }},
		{"float32 overflow", `3.5e38`, func() any { return new(float32) }},
		{"float32 in slice", `[3.40282356e38]`, func() any { return new([]float32) }},
		{"map any key", `{"A":{"k":1}}`, func() any { return new(rvMaps) }},
		{"map float32 key", `{"F":{"1":"x"}}`, func() any { return new(rvMaps) }},
		{"map complex key", `{"C":{"1":1}}`, func() any { return new(rvMaps) }},
		{"map array key", `{"S":{"1":1}}`, func() any { return new(rvMaps) }},
		{"map ptr key", `{"P":{"1":1}}`, func() any { return new(rvMaps) }},
		{"map any key empty", `{}`, func() any { return new(map[any]int) }},
		{"map float key null", `null`, func() any { return new(map[float64]int) }},
	}
}

func TestReviewDecodeAgainstStd3(t *testing.T) {
	for _, c := range rvCases3() {
		t.Run(c.name, func(t *testing.T) {
			want, got := c.make(), c.make()
			werr := json.Unmarshal([]byte(c.data), want)
			gerr := jsoncodec.Fast{}.Unmarshal([]byte(c.data), got)
			if (werr == nil) != (gerr == nil) || werr == nil && !reflect.DeepEqual(want, got) {
				t.Errorf("Unmarshal(%q) into %T:\n fast: %s err=%v\n std:  %s err=%v", c.data, want, rvShow(got), gerr, rvShow(want), werr)
			}
		})
	}
}
