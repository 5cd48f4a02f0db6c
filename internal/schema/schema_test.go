package schema

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

type Base struct {
	ID       string `json:"id"`
	Shadowed int    `json:"shadowed"`
}

type Other struct {
	Clash string `json:"clash"`
}

type Another struct {
	Clash string `json:"clash"`
}

// ambiguous embeds Other and Another, whose members clash: made at run time,
// as vet refuses the type written out.
var ambiguous = reflect.StructOf([]reflect.StructField{
	{Name: "Other", Type: reflect.TypeFor[Other](), Anonymous: true},
	{Name: "Another", Type: reflect.TypeFor[Another](), Anonymous: true},
	{Name: "Y", Type: reflect.TypeFor[int]()},
})

type Money struct{ cents int64 }

func (m Money) MarshalJSON() ([]byte, error) { return json.Marshal(float64(m.cents) / 100) }

type Level int

func (l Level) MarshalText() ([]byte, error) { return []byte("level"), nil }

type Shape struct{}

func (Shape) JSONSchema() json.RawMessage {
	return json.RawMessage(`{"enum":["circle","square"]}`)
}

type Node struct {
	Name     string  `json:"name"`
	Children []*Node `json:"children,omitempty"`
}

type Order struct {
	Base
	*Other
	Shadowed string   `json:"shadowed"` // shallower: wins over Base's
	Item     string   `json:"item"`
	Qty      int      `json:"qty,string"`
	Price    *float64 `json:"price,omitempty"`
	Note     string   `json:",omitempty"`
	Skipped  string   `json:"-"`
	//lint:ignore SA5008 a member named "-", as encoding/json reads the tag
	Dash string `json:"-,"`
	//lint:ignore U1000 unexported: not a member
	private  string
	Tags     []string        `json:"tags"`
	Blob     []byte          `json:"blob"`
	Grid     [2][2]int       `json:"grid"`
	Meta     map[string]any  `json:"meta"`
	ByID     map[int]bool    `json:"by_id"`
	At       time.Time       `json:"at"`
	Maybe    *time.Time      `json:"maybe"`
	Raw      json.RawMessage `json:"raw"`
	Num      json.Number     `json:"num"`
	Cost     Money           `json:"cost"`
	Lvl      Level           `json:"lvl"`
	Shape    Shape           `json:"shape"`
	Tree     Node            `json:"tree"`
	Any      any             `json:"any"`
	Func     func()          `json:"-"`
	Untagged uint8
}

func TestFor(t *testing.T) {
	s := Of(reflect.TypeFor[Order]())
	want := map[string]string{
		"id": "string", "clash": "string", "shadowed": "string", "item": "string", "qty": "string", "price": "number|null",
		"Note": "string", "-": "string", "tags": "array|null", "blob": "string|null", "grid": "array",
		"meta": "object|null", "by_id": "object|null", "at": "string", "maybe": "string|null", "raw": "",
		"num": "number", "cost": "", "lvl": "string", "shape": "", "tree": "", "any": "", "Untagged": "integer",
	}
	if got := slices.Sorted(maps.Keys(s.Properties)); !slices.Equal(got, slices.Sorted(maps.Keys(want))) {
		t.Fatalf("got members %v, want %v", got, slices.Sorted(maps.Keys(want)))
	}
	for name, typ := range want {
		if got := strings.Join(s.Properties[name].Type, "|"); got != typ {
			t.Errorf("%s: got type %q, want %q", name, got, typ)
		}
	}
	for _, name := range []string{"price", "Note"} {
		if slices.Contains(s.Required, name) {
			t.Errorf("%s is required, want optional (omitempty)", name)
		}
	}
	if !slices.Contains(s.Required, "item") {
		t.Errorf("item is not required, want required")
	}
	if got := string(s.Properties["shape"].JSON()); got != `{"enum":["circle","square"]}` {
		t.Errorf("a Describer: got %s, want its own schema", got)
	}
	if got := s.Properties["tree"].Ref; got != "#/$defs/schema.Node" {
		t.Errorf("tree: got $ref %q, want #/$defs/schema.Node", got)
	}
	node := s.Defs["schema.Node"]
	if node == nil || node.Properties["children"].Items.AnyOf[0].Ref != "#/$defs/schema.Node" {
		t.Errorf("a recursive type: got %s, want a $ref to itself", node.JSON())
	}
	if s.Properties["at"].Format != "date-time" {
		t.Errorf("time.Time: got format %q, want date-time", s.Properties["at"].Format)
	}
	if got := Of(reflect.TypeFor[Node]()).Properties["children"].Items.AnyOf[0].Ref; got != "#" {
		t.Errorf("a recursive root: got $ref %q, want #", got)
	}
}

// TestMembersAsEncoded holds the members For lists to those encoding/json
// writes, for types whose every member is always written.
func TestMembersAsEncoded(t *testing.T) {
	type Inner struct {
		A string `json:"a"`
		B int
	}
	type Deep struct{ Inner }
	type Twice struct {
		Inner
		Deep
		C bool `json:"A"` // another name than a: both kept
	}
	type Tagged struct {
		Inner
		X string `json:"a"` // shallower
	}
	type inner struct{ Z int } // unexported, embedded: promoted
	type Unexported struct {
		inner
		W int
	}
	type EmbeddedPtr struct {
		*Inner
		V int
	}
	for _, v := range []any{
		Twice{}, Tagged{}, reflect.New(ambiguous).Elem().Interface(), Unexported{}, EmbeddedPtr{Inner: &Inner{}}, Order{Other: &Other{}},
		Node{}, struct{}{}, struct{ A, B string }{},
	} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var obj map[string]any
		if err := json.Unmarshal(b, &obj); err != nil {
			t.Fatal(err)
		}
		s := Of(reflect.TypeOf(v))
		var optional []string
		for name := range s.Properties {
			if !slices.Contains(s.Required, name) {
				optional = append(optional, name)
			}
		}
		got := slices.Sorted(maps.Keys(s.Properties))
		want := slices.Sorted(maps.Keys(obj))
		want = slices.DeleteFunc(want, func(string) bool { return false })
		for _, o := range optional {
			if !slices.Contains(want, o) {
				want = append(want, o)
			}
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%T: got members %v, want %v, as encoding/json writes %s", v, got, want, b)
		}
	}
}

func TestCompare(t *testing.T) {
	type ClientReq struct {
		Item string `json:"item"`
		Qty  int    `json:"qty"`
	}
	type ServerReq struct {
		Item     string `json:"item"`
		Quantity int    `json:"quantity"`
	}
	type Line struct {
		SKU   string  `json:"sku"`
		Price float64 `json:"price"`
	}
	type Cart struct {
		Lines []Line `json:"lines"`
		Count int    `json:"count"`
	}
	type Line2 struct {
		SKU   string `json:"SKU"` // case folded: still read
		Price int    `json:"price"`
	}
	type Cart2 struct {
		Lines []Line2 `json:"lines"`
		Count float64 `json:"count"` // an integer reads as a number
	}
	tests := []struct {
		name           string
		sender, reader reflect.Type
		want           []string
	}{
		{"renamed", reflect.TypeFor[ClientReq](), reflect.TypeFor[ServerReq](), []string{
			`the client sends "qty", which the server's request type lacks`,
			`the server reads "quantity", which the client never sends`}},
		{"same", reflect.TypeFor[ClientReq](), reflect.TypeFor[ClientReq](), nil},
		{"nested", reflect.TypeFor[Cart](), reflect.TypeFor[Cart2](), []string{
			`the client sends "lines[].price" as a number, which the server reads as an integer`}},
		{"root", reflect.TypeFor[string](), reflect.TypeFor[int](), []string{
			`the client sends a string as the request, which the server reads as an integer`}},
		{"any", reflect.TypeFor[ClientReq](), reflect.TypeFor[any](), nil},
		{"map", reflect.TypeFor[ClientReq](), reflect.TypeFor[map[string]string](), []string{
			`the client sends "qty" as an integer, which the server reads as a string`}},
		{"recursive", reflect.TypeFor[Node](), reflect.TypeFor[Node](), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, d := range Compare(Of(tt.sender), Of(tt.reader)) {
				got = append(got, d.Text("the client", "the server", "request"))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCompareParsed(t *testing.T) {
	// What a client compares is a schema read back from the registry.
	type A struct {
		Tree Node       `json:"tree"`
		When *time.Time `json:"when"`
	}
	type B struct {
		Tree Node   `json:"tree"`
		When string `json:"when"`
	}
	a, err := Parse(For(reflect.TypeFor[A]()))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse(For(reflect.TypeFor[B]()))
	if err != nil {
		t.Fatal(err)
	}
	if d := Compare(a, b); len(d) != 0 {
		t.Errorf("got %v, want no difference", d)
	}
}

func TestUnknown(t *testing.T) {
	s := Of(reflect.TypeFor[Order]())
	got := Unknown(s, []byte(`{"ITEM":"a","qty":"1","extra":1,"tree":{"name":"x","children":[{"nme":"y"}]},"meta":{"free":1},"tags":["a"]}`))
	want := []string{"extra", "tree.children[].nme"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestDescribeAndExample(t *testing.T) {
	type Req struct {
		Item string   `json:"item"`
		Qty  int      `json:"qty"`
		Tags []string `json:"tags,omitempty"`
		Tree *Node    `json:"tree"`
	}
	s := Of(reflect.TypeFor[Req]())
	if got, want := Describe(s), "{item: string, qty: integer, tree: schema.Node, tags?: []string}"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	var v Req
	if err := json.Unmarshal(Example(s), &v); err != nil {
		t.Errorf("the example %s does not decode: %v", Example(s), err)
	}
	if got, want := string(Example(s)), `{"item":"","qty":0,"tags":[],"tree":null}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
