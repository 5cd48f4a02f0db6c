package schema

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// --- helpers ---

func keysOf(t *testing.T, v any) []string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %T: %v", v, err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%T encodes as %s, not an object", v, b)
	}
	return slices.Sorted(maps.Keys(m))
}

// --- nil embedded pointer: encoding/json omits its promoted members ---

type RvInner struct {
	X int `json:"x"`
}

type RvOuter struct {
	*RvInner
	Y int `json:"y"`
}

// TestRequiredNilEmbeddedPointer: encoding/json does not write the
// members promoted from a nil embedded pointer, yet For lists them as
// required (always written).
func TestRequiredNilEmbeddedPointer(t *testing.T) {
	got := keysOf(t, RvOuter{})
	s := Of(reflect.TypeFor[RvOuter]())
	for _, name := range s.Required {
		if !slices.Contains(got, name) {
			t.Errorf("required %q, but json.Marshal(RvOuter{}) = keys %v: it is not always written", name, got)
		}
	}
}

// --- map keys encoding/json cannot encode ---

type RvPtrKey struct{ A, B int }

func (k *RvPtrKey) MarshalText() ([]byte, error) { return []byte("k"), nil }
func (k *RvPtrKey) UnmarshalText(b []byte) error { return nil }

// TestMapKeyPointerTextMarshaler: encoding/json refuses to encode a map
// whose key type implements TextMarshaler only on its pointer; the promise is
// that such maps are unconstrained.
func TestMapKeyPointerTextMarshaler(t *testing.T) {
	//lint:ignore SA1026 the test holds that encoding/json refuses the key
	_, err := json.Marshal(map[RvPtrKey]int{{1, 2}: 3})
	if err == nil {
		t.Skip("encoding/json encodes it")
	}
	s := Of(reflect.TypeFor[map[RvPtrKey]int]())
	if len(s.Type) != 0 || s.AdditionalProperties != nil {
		t.Errorf("json.Marshal fails (%v), yet the schema is %s; want {} (unconstrained)", err, s.JSON())
	}
}

// --- TextMarshaler / Marshaler on a pointer receiver, field held by value ---

type RvPtrText struct {
	A int `json:"a"`
}

func (p *RvPtrText) MarshalText() ([]byte, error) { return []byte("t"), nil }

type RvHolder struct {
	F RvPtrText `json:"f"`
}

// TestPointerTextMarshalerByValue: a value field whose MarshalText has a
// pointer receiver is not addressable when a request value is encoded
// (codec.Marshal(req)), so encoding/json writes it as an object, not a string.
func TestPointerTextMarshalerByValue(t *testing.T) {
	b, _ := json.Marshal(RvHolder{})
	var m map[string]json.RawMessage
	json.Unmarshal(b, &m)
	s := Of(reflect.TypeFor[RvHolder]())
	got := strings.Join(s.Properties["f"].Type, "|")
	if m["f"][0] == '{' && got == "string" {
		t.Errorf("json.Marshal(RvHolder{}) = %s (f an object), schema says f is %q", b, got)
	}
}

// --- Describer schemas: additionalProperties false, and plain objects ---

type RvClosed struct {
	A int `json:"a"`
}

func (RvClosed) JSONSchema() json.RawMessage {
	return json.RawMessage(`{"type":"object","properties":{"a":{"type":"integer"}},"additionalProperties":false}`)
}

// TestDescriberAdditionalPropertiesFalse: the most common hand-written
// object schema, with "additionalProperties": false, reads as a map: strict
// decoding (Unknown) stops finding unknown members, and Compare stops
// finding members the reader lacks.
func TestDescriberAdditionalPropertiesFalse(t *testing.T) {
	s := Of(reflect.TypeFor[RvClosed]())
	if got := Unknown(s, []byte(`{"a":1,"zzz":2}`)); !slices.Equal(got, []string{"zzz"}) {
		t.Errorf("Unknown: got %q, want [zzz]", got)
	}
	type sender struct {
		A   int `json:"a"`
		Zzz int `json:"zzz"`
	}
	diffs := Compare(Of(reflect.TypeFor[sender]()), s)
	if len(diffs) != 1 || diffs[0].Kind != Lacks || diffs[0].Path != "zzz" {
		t.Errorf("Compare: got %+v, want zzz lacked", diffs)
	}
}

type RvAnyObject struct{}

func (RvAnyObject) JSONSchema() json.RawMessage { return json.RawMessage(`{"type":"object"}`) }
func (*RvAnyObject) UnmarshalJSON([]byte) error { return nil }

// TestDescriberAnyObject: {"type":"object"} allows any member (JSON
// Schema), but Compare treats it as a struct with no fields: every member
// the sender writes is "lacked".
func TestDescriberAnyObject(t *testing.T) {
	type sender struct {
		A int `json:"a"`
	}
	if diffs := Compare(Of(reflect.TypeFor[sender]()), Of(reflect.TypeFor[RvAnyObject]())); len(diffs) != 0 {
		t.Errorf("got %+v, want none: the reader's schema allows any object", diffs)
	}
}

// --- Describer with its own $defs, inside another type ---

type RvSelfDefs struct{}

func (RvSelfDefs) JSONSchema() json.RawMessage {
	return json.RawMessage(`{"type":"object","properties":{"p":{"$ref":"#/$defs/P"}},"$defs":{"P":{"type":"object","properties":{"x":{"type":"integer"}}}}}`)
}

type RvWrap struct {
	S RvSelfDefs `json:"s"`
}

// TestDescriberDefsNested: a Describer's own "$ref":"#/$defs/P" is
// resolved against the outer type's root, where no P is: its members go
// unchecked when it is nested.
func TestDescriberDefsNested(t *testing.T) {
	root := Of(reflect.TypeFor[RvSelfDefs]())
	if got := Unknown(root, []byte(`{"p":{"x":1,"bad":2}}`)); !slices.Equal(got, []string{"p.bad"}) {
		t.Fatalf("at the root: got %q, want [p.bad]", got)
	}
	nested := Of(reflect.TypeFor[RvWrap]())
	if got := Unknown(nested, []byte(`{"s":{"p":{"x":1,"bad":2}}}`)); !slices.Equal(got, []string{"s.p.bad"}) {
		t.Errorf("nested: got %q, want [s.p.bad]", got)
	}
}

// --- Example: a form's example must decode into the type ---

type RvQuoted struct {
	N  int  `json:"n,string"`
	OK bool `json:"ok,string"`
}

// TestExampleQuoted: Example writes "" for a ",string" integer or
// boolean, which encoding/json refuses: the dashboard's example request
// fails.
func TestExampleQuoted(t *testing.T) {
	ex := Example(Of(reflect.TypeFor[RvQuoted]()))
	var v RvQuoted
	if err := json.Unmarshal(ex, &v); err != nil {
		t.Errorf("Example = %s, which does not decode into RvQuoted: %v", ex, err)
	}
}

// --- round trip ---

type RvEmpty struct{}

type RvMaybe struct {
	E *RvEmpty `json:"e"`
}

// TestUnknownRoundTrip: Unknown on a parsed schema of an empty struct
// drops its constraint (properties {} is omitted when written).
func TestUnknownRoundTrip(t *testing.T) {
	direct := Of(reflect.TypeFor[RvEmpty]())
	parsed, err := Parse(For(reflect.TypeFor[RvEmpty]()))
	if err != nil {
		t.Fatal(err)
	}
	a, b := Unknown(direct, []byte(`{"x":1}`)), Unknown(parsed, []byte(`{"x":1}`))
	if !slices.Equal(a, b) {
		t.Errorf("Unknown before round trip %q, after %q", a, b)
	}
}

type RvA struct {
	E    RvEmpty            `json:"e"`
	P    *RvEmpty           `json:"p"`
	S    RvSelfDefs         `json:"s"`
	C    RvClosed           `json:"c"`
	M    map[string]RvEmpty `json:"m"`
	Kids []RvA              `json:"kids"`
}

type RvB struct {
	E struct {
		X int `json:"x"`
	} `json:"e"`
	P *struct {
		Y int `json:"y"`
	} `json:"p"`
	S    RvWrap            `json:"s"`
	C    RvAnyObject       `json:"c"`
	M    map[string]RvWrap `json:"m"`
	Kids []RvB             `json:"kids"`
}

// TestCompareRoundTrip: Compare on derived schemas and on their
// published JSON, parsed, agree.
func TestCompareRoundTrip(t *testing.T) {
	pairs := [][2]reflect.Type{
		{reflect.TypeFor[RvA](), reflect.TypeFor[RvB]()},
		{reflect.TypeFor[RvB](), reflect.TypeFor[RvA]()},
		{reflect.TypeFor[RvEmpty](), reflect.TypeFor[RvQuoted]()},
		{reflect.TypeFor[RvQuoted](), reflect.TypeFor[RvEmpty]()},
	}
	for _, p := range pairs {
		a, _ := Parse(For(p[0]))
		b, _ := Parse(For(p[1]))
		direct, parsed := Compare(Of(p[0]), Of(p[1])), Compare(a, b)
		if !reflect.DeepEqual(direct, parsed) {
			t.Errorf("%v into %v: derived %+v, parsed %+v", p[0], p[1], direct, parsed)
		}
	}
}

type RvE1 struct {
	A int `json:"a"`
	B int
	C int `json:"c"`
}
type RvE2 struct {
	A int
	B int `json:"B"`
	D int `json:"d"`
}
type rvHidden struct {
	H int `json:"h"`
}
type RvMid struct {
	RvE1
	M int `json:"m"`
}
type RvMid2 struct {
	RvE1
	N int `json:"n"`
}
type RvNamedInt int
type RvEmbeds struct {
	RvE1
	*RvE2
	rvHidden
	RvNamedInt
	Tagged RvE1 `json:"tagged"`
}

// rvTwice embeds RvE1 twice, at one depth, through RvMid and RvMid2: made
// at run time, as vet refuses the clash written out.
var rvTwice = reflect.StructOf([]reflect.StructField{
	{Name: "RvMid", Type: reflect.TypeFor[RvMid](), Anonymous: true},
	{Name: "RvMid2", Type: reflect.TypeFor[RvMid2](), Anonymous: true},
	{Name: "Z", Type: reflect.TypeFor[int](), Tag: `json:"z"`},
})

// rvDeep embeds RvMid and has a shallower c of its own: made at run time,
// as vet refuses the repeated tag written out.
var rvDeep = reflect.StructOf([]reflect.StructField{
	{Name: "RvMid", Type: reflect.TypeFor[RvMid](), Anonymous: true},
	{Name: "C", Type: reflect.TypeFor[string](), Tag: `json:"c"`},
})

// TestEmbeddedAsEncoded holds For's members to json.Marshal's keys of
// filled values, for embeddings encoding/json resolves by depth and tags.
func TestEmbeddedAsEncoded(t *testing.T) {
	for _, v := range []any{
		RvEmbeds{RvE2: &RvE2{}},
		reflect.New(rvTwice).Elem().Interface(),
		reflect.New(rvDeep).Elem().Interface(),
	} {
		got := slices.Sorted(maps.Keys(Of(reflect.TypeOf(v)).Properties))
		want := keysOf(t, v)
		if !slices.Equal(got, want) {
			t.Errorf("%T: schema members %v, json.Marshal keys %v", v, got, want)
		}
	}
}
