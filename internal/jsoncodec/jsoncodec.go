// Package jsoncodec is the JSON of requests' arguments and handlers' results
// by default: github.com/goccy/go-json, pure Go and several times faster than
// encoding/json, held to encoding/json's results by a differential fuzz test
// (FuzzAgainstStd). Types with a ",string" field, a float32 or a map without
// plain string keys anywhere in them are decoded by encoding/json: goccy/go-json
// takes numbers in ",string" fields as strconv does ("+1", ".5", "Inf",
// "NaN"), refuses float32s just above MaxFloat32, and takes map keys that
// encoding/json refuses, all of which encoding/json does otherwise.
package jsoncodec

import (
	"encoding"
	"encoding/json"
	"reflect"
	"strings"
	"sync"

	gojson "github.com/goccy/go-json"
)

// Fast encodes with github.com/goccy/go-json and decodes with it too, but
// for the types encoding/json decodes (see the package doc).
type Fast struct{}

// Marshal returns the JSON of v, as encoding/json.Marshal does.
func (Fast) Marshal(v any) ([]byte, error) { return gojson.Marshal(v) }

// Unmarshal decodes data into v as encoding/json.Unmarshal does.
func (Fast) Unmarshal(data []byte, v any) error {
	if quoted(reflect.TypeOf(v)) {
		return json.Unmarshal(data, v)
	}
	return gojson.Unmarshal(data, v)
}

// quotes caches, by type, whether a type holds a ",string" field.
var quotes sync.Map

func quoted(t reflect.Type) bool {
	if t == nil {
		return true // encoding/json's error for Unmarshal(data, nil)
	}
	if q, ok := quotes.Load(t); ok {
		return q.(bool)
	}
	q := holdsQuoted(t, map[reflect.Type]bool{})
	quotes.Store(t, q)
	return q
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// holdsQuoted reports whether t is one that goccy decodes differently: it
// holds, anywhere, a ",string" field, a float32, or a map whose keys are not
// plain strings. It walks t's element and field types, each once.
func holdsQuoted(t reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return false
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return holdsQuoted(t.Elem(), seen)
	case reflect.Map:
		// goccy takes keys encoding/json refuses (interfaces, floats,
		// pointers): only plain string keys go to it.
		k := t.Key()
		if k.Kind() != reflect.String || k.Implements(textUnmarshaler) || reflect.PointerTo(k).Implements(textUnmarshaler) {
			return true
		}
		return holdsQuoted(t.Elem(), seen)
	case reflect.Float32:
		// goccy refuses numbers just above MaxFloat32, which encoding/json
		// rounds to it, as strconv.ParseFloat(s, 32) does.
		return true
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if _, opts, _ := strings.Cut(f.Tag.Get("json"), ","); hasOption(opts, "string") {
				return true
			}
			if holdsQuoted(f.Type, seen) {
				return true
			}
		}
	}
	return false
}

func hasOption(opts, name string) bool {
	for opts != "" {
		var o string
		o, opts, _ = strings.Cut(opts, ",")
		if o == name {
			return true
		}
	}
	return false
}
