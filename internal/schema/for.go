package schema

import (
	"bytes"
	"encoding"
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
)

// Describer is a type that gives its own JSON Schema, as the JSON of one: For
// uses it instead of the schema it would derive, and for a Marshaler, instead
// of no constraint. It is redisrpc.Describer.
type Describer interface {
	JSONSchema() json.RawMessage
}

var (
	timeType        = reflect.TypeFor[time.Time]()
	numberType      = reflect.TypeFor[json.Number]()
	marshalerType   = reflect.TypeFor[json.Marshaler]()
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textType        = reflect.TypeFor[encoding.TextMarshaler]()
	describerType   = reflect.TypeFor[Describer]()
)

// cache holds the schemas For has made, by type: a type's schema never
// changes, so each is derived once per process.
var cache sync.Map // reflect.Type → json.RawMessage

// For returns the JSON Schema of t as encoding/json encodes it, with $schema
// set, encoded: computed once per type, then shared.
func For(t reflect.Type) json.RawMessage {
	if b, ok := cache.Load(t); ok {
		return b.(json.RawMessage)
	}
	s := Of(t)
	s.Schema = Draft
	b, _ := cache.LoadOrStore(t, s.JSON())
	return b.(json.RawMessage)
}

// Of derives the schema of t. Named struct types other than t itself are
// described once, under $defs, and referred to; t refers to itself as "#".
func Of(t reflect.Type) *Schema {
	b := &builder{root: t, names: map[reflect.Type]string{}, taken: map[string]bool{}, defs: map[string]*Schema{}}
	s := b.of(t)
	if len(b.defs) > 0 {
		s.Defs = b.defs
	}
	return s
}

type builder struct {
	root  reflect.Type
	names map[reflect.Type]string // named structs described, or being described, under $defs
	taken map[string]bool
	defs  map[string]*Schema
	stack []reflect.Type // named non-struct types being described
}

func (b *builder) of(t reflect.Type) *Schema {
	switch {
	case t.Kind() == reflect.Pointer: // nil is null; else as what it points to
		return nullable(b.of(t.Elem()))
	case t == timeType:
		return &Schema{Type: Types{"string"}, Format: "date-time"}
	case t == numberType:
		return &Schema{Type: Types{"number"}}
	case implements(t, describerType):
		return b.described(t)
	case implements(t, marshalerType) || implements(t, unmarshalerType):
		return &Schema{} // whatever it writes: json.RawMessage among them
	case t.Implements(textType):
		return &Schema{Type: Types{"string"}, Title: title(t)}
	case reflect.PointerTo(t).Implements(textType):
		return &Schema{} // a string where the value is addressable, else its fields
	}
	if t.Kind() == reflect.Struct && t.Name() != "" {
		return b.named(t)
	}
	if t.Name() != "" {
		if slices.Contains(b.stack, t) { // type T []T: no more than anything
			return &Schema{}
		}
		b.stack = append(b.stack, t)
		defer func() { b.stack = b.stack[:len(b.stack)-1] }()
	}
	switch t.Kind() {
	case reflect.Bool:
		return &Schema{Type: Types{"boolean"}}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return &Schema{Type: Types{"integer"}}
	case reflect.Float32, reflect.Float64:
		return &Schema{Type: Types{"number"}}
	case reflect.String:
		return &Schema{Type: Types{"string"}}
	case reflect.Slice:
		if e := t.Elem(); e.Kind() == reflect.Uint8 && !implements(e, marshalerType) && !implements(e, textType) {
			return &Schema{Type: Types{"string", "null"}, ContentEncoding: "base64"}
		}
		return &Schema{Type: Types{"array", "null"}, Items: b.of(t.Elem())}
	case reflect.Array:
		n := t.Len()
		return &Schema{Type: Types{"array"}, Items: b.of(t.Elem()), MinItems: &n, MaxItems: &n}
	case reflect.Map:
		if !mapKey(t.Key()) {
			return &Schema{} // encoding/json refuses it
		}
		return &Schema{Type: Types{"object", "null"}, AdditionalProperties: b.of(t.Elem())}
	case reflect.Struct:
		return b.object(t)
	}
	return &Schema{} // interfaces: anything; funcs, chans, complex numbers: encoding/json refuses them
}

// named describes a named struct under $defs, and refers to it.
func (b *builder) named(t reflect.Type) *Schema {
	if t == b.root {
		if _, busy := b.names[t]; busy {
			return &Schema{Ref: "#"}
		}
		b.names[t] = ""
		return b.object(t)
	}
	name, seen := b.def(t)
	if seen {
		return &Schema{Ref: "#/$defs/" + name}
	}
	b.defs[name] = b.object(t)
	return &Schema{Ref: "#/$defs/" + name}
}

// def returns t's name under $defs, and whether t had it already; a new
// name is one no other type has.
func (b *builder) def(t reflect.Type) (name string, seen bool) {
	if name, ok := b.names[t]; ok {
		return name, true
	}
	name = defName(t)
	for i := 2; b.taken[name]; i++ {
		name = defName(t) + "_" + strconv.Itoa(i)
	}
	b.taken[name] = true
	b.names[t] = name
	return name, false
}

// object describes a struct by the fields encoding/json encodes.
func (b *builder) object(t reflect.Type) *Schema {
	s := &Schema{Type: Types{"object"}, Properties: map[string]*Schema{}, Title: title(t)}
	for _, f := range fields(t) {
		var fs *Schema
		if f.quoted {
			fs = quoted(f.typ)
		} else {
			fs = b.of(f.typ)
		}
		s.Properties[f.name] = fs
		if !f.omit {
			s.Required = append(s.Required, f.name)
		}
	}
	return s
}

// Patterns of the members ",string" writes as strings.
const (
	quotedString = `^".*"$`
	quotedInt    = `^-?[0-9]+$`
	quotedUint   = `^[0-9]+$`
	quotedFloat  = `^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`
)

// quoted describes a ",string" member of type t: a string holding the JSON
// of its value.
func quoted(t reflect.Type) *Schema {
	s := &Schema{Type: Types{"string"}}
	e := t
	if e.Kind() == reflect.Pointer {
		e = e.Elem()
	}
	switch e.Kind() {
	case reflect.Bool:
		s.Enum = []any{"true", "false"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		s.Pattern = quotedInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		s.Pattern = quotedUint
	case reflect.Float32, reflect.Float64:
		s.Pattern = quotedFloat
	case reflect.String:
		s.Pattern = quotedString
	}
	if t.Kind() == reflect.Pointer {
		s = nullable(s)
	}
	return s
}

// described returns the schema t gives of itself, or no constraint where
// that is not JSON.
func (b *builder) described(t reflect.Type) *Schema {
	var v reflect.Value
	if t.Implements(describerType) {
		v = reflect.Zero(t)
		if t.Kind() == reflect.Pointer {
			v = reflect.New(t.Elem())
		}
	} else {
		v = reflect.New(t)
	}
	raw := v.Interface().(Describer).JSONSchema()
	s, err := Parse(raw)
	if err != nil {
		return &Schema{}
	}
	if t != b.root && (s.Defs != nil || bytes.Contains(raw, []byte(`"$ref"`))) {
		// Its $refs point within itself: below the root they would point
		// within the root. It goes under $defs, its own $defs beside it.
		return b.hoist(t, raw)
	}
	s.raw = append(json.RawMessage(nil), raw...)
	return s
}

// hoist puts the schema raw that t gives of itself, and the $defs it
// holds, under the root's $defs, its $refs rewritten to point there, and
// refers to it.
func (b *builder) hoist(t reflect.Type, raw json.RawMessage) *Schema {
	name, seen := b.def(t)
	if seen {
		return &Schema{Ref: "#/$defs/" + name}
	}
	var doc any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if d.Decode(&doc) != nil {
		return &Schema{}
	}
	local := map[string]string{} // its $defs' names → theirs under the root
	if obj, ok := doc.(map[string]any); ok {
		if defs, ok := obj["$defs"].(map[string]any); ok {
			for k := range defs {
				local[k] = name + "." + k
			}
			for k, def := range defs {
				b.defs[local[k]] = rawSchema(rewrite(def, name, local))
				b.taken[local[k]] = true
			}
			delete(obj, "$defs")
		}
	}
	b.defs[name] = rawSchema(rewrite(doc, name, local))
	return &Schema{Ref: "#/$defs/" + name}
}

// rewrite returns v, a decoded schema, with its $refs to itself ("#") and
// to its $defs pointing to them under the root's $defs.
func rewrite(v any, self string, local map[string]string) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if ref, ok := e.(string); ok && k == "$ref" {
				switch {
				case ref == "#":
					v[k] = "#/$defs/" + self
				case strings.HasPrefix(ref, "#/$defs/") && local[strings.TrimPrefix(ref, "#/$defs/")] != "":
					v[k] = "#/$defs/" + local[strings.TrimPrefix(ref, "#/$defs/")]
				}
				continue
			}
			v[k] = rewrite(e, self, local)
		}
	case []any:
		for i, e := range v {
			v[i] = rewrite(e, self, local)
		}
	}
	return v
}

// rawSchema is the schema v encodes, written as v.
func rawSchema(v any) *Schema {
	raw, err := json.Marshal(v)
	if err != nil {
		return &Schema{}
	}
	s, err := Parse(raw)
	if err != nil {
		return &Schema{}
	}
	s.raw = raw
	return s
}

// nullable lets s be null too, as encoding/json writes a nil pointer.
func nullable(s *Schema) *Schema {
	switch {
	case s.raw != nil || s.Ref != "":
		return &Schema{AnyOf: []*Schema{s, {Type: Types{"null"}}}}
	case len(s.Type) == 0 || s.Type.has("null"):
		return s
	}
	s.Type = append(s.Type, "null")
	return s
}

// implements reports whether t or *t implements i.
func implements(t, i reflect.Type) bool {
	return t.Implements(i) || (t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(i))
}

// mapKey reports whether encoding/json encodes maps with keys of type k.
func mapKey(k reflect.Type) bool {
	switch k.Kind() {
	case reflect.String, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return true
	}
	return k.Implements(textType) // the encoder asks the key itself, not its pointer
}

// title is a named type's Go name, for people reading the schema.
func title(t reflect.Type) string {
	if t.Name() == "" {
		return ""
	}
	return t.String()
}

// defName is t's name under $defs: its Go name, with what a JSON pointer or
// a URI fragment would need escaped (generics' brackets, paths) made "_".
func defName(t reflect.Type) string {
	return strings.Map(func(r rune) rune {
		if r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '.' || r == '-') {
			return r
		}
		return '_'
	}, t.String())
}
