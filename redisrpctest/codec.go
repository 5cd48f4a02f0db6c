package redisrpctest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/redisrpc/redisrpc"
)

// CheckCodec fails tb where codec does not do what encoding/json does with
// the Go features requests and responses commonly use: struct tags (names,
// "-", omitempty, string), embedded structs, MarshalJSON and UnmarshalJSON on
// values and pointers, json.RawMessage, maps, slices, pointers, large
// integers, and errors on JSON that does not fit. Marshal's output must be
// the same JSON value as encoding/json's (member order and escaping may
// differ); Unmarshal's result must be equal. Run it before giving a codec to
// redisrpc.WithCodec.
func CheckCodec(tb testing.TB, codec redisrpc.Codec) {
	tb.Helper()
	for _, c := range codecCases() {
		want, werr := json.Marshal(c.value)
		got, gerr := codec.Marshal(c.value)
		switch {
		case (gerr != nil) != (werr != nil):
			tb.Errorf("redisrpctest: Marshal of %s: got error %v, want %v", c.name, gerr, werr)
			continue
		case werr != nil:
		case !sameJSON(got, want):
			tb.Errorf("redisrpctest: Marshal of %s: got %s, want %s", c.name, got, want)
		}
		for _, data := range c.decode {
			wantV := reflect.New(reflect.TypeOf(c.value))
			werr := json.Unmarshal([]byte(data), wantV.Interface())
			gotV := reflect.New(reflect.TypeOf(c.value))
			gerr := codec.Unmarshal([]byte(data), gotV.Interface())
			switch {
			case (gerr != nil) != (werr != nil):
				tb.Errorf("redisrpctest: Unmarshal of %s into %s: got error %v, want %v", data, c.name, gerr, werr)
			case werr == nil && !reflect.DeepEqual(gotV.Elem().Interface(), wantV.Elem().Interface()):
				tb.Errorf("redisrpctest: Unmarshal of %s into %s: got %#v, want %#v", data, c.name, gotV.Elem().Interface(), wantV.Elem().Interface())
			}
		}
	}
}

// sameJSON reports whether a and b are both JSON and the same value, numbers
// compared as written.
func sameJSON(a, b []byte) bool {
	decode := func(data []byte) (any, bool) {
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber()
		var v any
		if d.Decode(&v) != nil || d.More() {
			return nil, false
		}
		return v, true
	}
	va, oka := decode(a)
	vb, okb := decode(b)
	return oka && okb && reflect.DeepEqual(va, vb)
}

type codecCase struct {
	name   string
	value  any      // marshalled, and the type decoded into
	decode []string // JSON to decode into a new value of value's type
}

// Types of the cases.
type (
	codecTagged struct {
		Name     string         `json:"name"`
		Skipped  string         `json:"-"`
		Empty    string         `json:"empty,omitempty"`
		Zero     int            `json:",omitempty"`
		NilSlice []int          `json:"nil_slice,omitempty"`
		NilMap   map[string]int `json:"nil_map,omitempty"`
		NilPtr   *int           `json:"nil_ptr,omitempty"`
		False    bool           `json:"false,omitempty"`
		Quoted   int64          `json:"quoted,string"`
		Untagged float64
		Map      map[string]string `json:"map"`
		Ptr      *string           `json:"ptr"`
		Any      any               `json:"any"`
		codecEmbedded
	}
	codecEmbedded struct {
		Inner  string `json:"inner"`
		Shadow int    `json:"shadow"`
	}
	codecShadowing struct {
		codecEmbedded
		Shadow string `json:"shadow"`
	}
	codecValueMarshaler struct{ n int }
	codecPtrMarshaler   struct{ s string }
	codecWithMarshalers struct {
		V codecValueMarshaler   `json:"v"`
		P *codecPtrMarshaler    `json:"p"`
		L []codecValueMarshaler `json:"l"`
	}
	codecWithRaw struct {
		ID  int             `json:"id"`
		Raw json.RawMessage `json:"raw"`
	}
)

func (m codecValueMarshaler) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf(`{"n":%d,"custom":true}`, m.n)), nil
}

func (m *codecValueMarshaler) UnmarshalJSON(data []byte) error {
	var v struct{ N int }
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	m.n = v.N * 10 // so that a codec that skips UnmarshalJSON is seen
	return nil
}

func (m *codecPtrMarshaler) MarshalJSON() ([]byte, error) {
	return json.Marshal(strings.ToUpper(m.s))
}

func (m *codecPtrMarshaler) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	m.s = strings.ToLower(s)
	return nil
}

func codecCases() []codecCase {
	s := "pointed <&>"
	return []codecCase{
		{name: "a tagged struct", value: codecTagged{
			Name: "a \"quoted\" <html> & \u2028 é name", Skipped: "no", Quoted: 1<<53 + 1, Untagged: 0.1,
			Map: map[string]string{"b": "2", "a": "1"}, Ptr: &s, Any: []any{1.5, "x", nil, true},
			codecEmbedded: codecEmbedded{Inner: "in", Shadow: 3},
		}, decode: []string{
			`{"name":"n","-":"d","quoted":"42","Untagged":1e3,"map":{"k":"v"},"ptr":"p","any":{"a":[1,2]},"inner":"i","NAME":"ignored?"}`,
			`{"Name":"case-insensitive match","EMPTY":"e","zero":7}`,
			`{"name":null,"map":null,"ptr":null,"nil_slice":[]}`,
			`{"quoted":42}`, // ,string wants a string
			`{"name":5}`,    // wrong type
			`{"name":"x"} trailing`,
		}},
		{name: "a shadowed embedded field", value: codecShadowing{codecEmbedded{"in", 1}, "outer"},
			decode: []string{`{"inner":"i","shadow":"s"}`}},
		{name: "MarshalJSON and UnmarshalJSON", value: codecWithMarshalers{
			V: codecValueMarshaler{2}, P: &codecPtrMarshaler{"p"}, L: []codecValueMarshaler{{1}, {2}},
		}, decode: []string{`{"v":{"N":3},"p":"UP","l":[{"N":1},{"N":4}]}`, `{"p":null}`, `{"v":"not an object"}`}},
		{name: "a value with MarshalJSON", value: codecValueMarshaler{7}, decode: []string{`{"N":7}`}},
		{name: "json.RawMessage", value: codecWithRaw{ID: 1, Raw: json.RawMessage(`{"kept":[1, 2 ,"as is"]}`)},
			decode: []string{`{"id":2,"raw":{"a" : [1,2]}}`, `{"id":3,"raw":null}`, `{"id":4}`}},
		{name: "a nil json.RawMessage", value: codecWithRaw{ID: 1}},
		{name: "a map with int keys", value: map[int]string{2: "two", 10: "ten"}, decode: []string{`{"1":"one","20":"twenty"}`, `{"x":"y"}`}},
		{name: "a slice of pointers", value: []*int{nil, new(int)}, decode: []string{`[null,5,7]`, `null`}},
		{name: "bytes", value: []byte("binary\x00\xff"), decode: []string{`"AAEC"`, `null`, `"not base64!"`}},
		{name: "large integers", value: []int64{1<<63 - 1, -1 << 63}, decode: []string{`[9007199254740993]`, `[1.5]`, `[1e400]`}},
		{name: "floats", value: []float64{0, -0.5, 1e21, 1e-7, 123456789.125}, decode: []string{`[1e308, -0, 5e-324]`}},
		{name: "an empty struct", value: struct{}{}, decode: []string{`{}`, `{"a":1}`, `[]`}},
		{name: "a string with invalid UTF-8", value: "bad \xff byte", decode: []string{`"\ud800 lone surrogate"`}},
	}
}
