// Package schema describes Go types as JSON Schema (draft 2020-12), as
// encoding/json encodes and decodes them, and compares two descriptions to
// find what one side sends that the other does not read.
//
// It is written here rather than taken from a library because the rules are
// the codec's: encoding/json's choice among embedded fields, ",string",
// []byte as base64, Marshaler types as anything, recursive types through
// $defs. The libraries on hand describe structs by their fields whatever
// their MarshalJSON, refuse recursive types, or bring dependencies the core
// module does not want.
package schema

import (
	"bytes"
	"encoding/json"
	"slices"
)

// Draft is the dialect of the schemas For returns.
const Draft = "https://json-schema.org/draft/2020-12/schema"

// Schema is the subset of JSON Schema that For writes. A schema with no
// keyword is unconstrained: any JSON value fits.
type Schema struct {
	Schema               string             `json:"$schema,omitempty"`
	Ref                  string             `json:"$ref,omitempty"`
	Title                string             `json:"title,omitempty"` // the Go type
	Type                 Types              `json:"type,omitempty"`
	Format               string             `json:"format,omitempty"`
	Pattern              string             `json:"pattern,omitempty"`
	Enum                 []any              `json:"enum,omitempty"`
	ContentEncoding      string             `json:"contentEncoding,omitempty"`
	Properties           map[string]*Schema `json:"properties,omitempty"`
	Required             []string           `json:"required,omitempty"`
	AdditionalProperties *Schema            `json:"additionalProperties,omitempty"`
	Items                *Schema            `json:"items,omitempty"`
	MinItems             *int               `json:"minItems,omitempty"`
	MaxItems             *int               `json:"maxItems,omitempty"`
	AnyOf                []*Schema          `json:"anyOf,omitempty"`
	Defs                 map[string]*Schema `json:"$defs,omitempty"`

	// raw is what a type that describes itself returned, written as it is.
	raw json.RawMessage
	// never is the schema false, which nothing fits: as additionalProperties,
	// an object closed to members it does not list.
	never bool
}

// MarshalJSON writes s, or, for a type that described itself, its schema as
// given.
func (s *Schema) MarshalJSON() ([]byte, error) {
	if s.raw != nil {
		return s.raw, nil
	}
	if s.never {
		return []byte("false"), nil
	}
	type plain Schema
	b, err := json.Marshal((*plain)(s))
	if err == nil && s.Properties != nil && len(s.Properties) == 0 {
		// A struct without fields: properties {} says it has none, where
		// an object without "properties" takes any.
		sep := ","
		if len(b) == 2 {
			sep = ""
		}
		b = append(b[:len(b)-1], sep+`"properties":{}}`...)
	}
	return b, err
}

// UnmarshalJSON reads a schema; true, and keywords it does not know, read as
// no constraint, and false as nothing fits.
func (s *Schema) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("true")):
		*s = Schema{}
		return nil
	case bytes.Equal(b, []byte("false")):
		*s = Schema{never: true}
		return nil
	}
	type plain Schema
	return json.Unmarshal(b, (*plain)(s))
}

// additional returns the schema of the members s does not list, nil where
// it lists all it takes (a struct, or additionalProperties false).
func (s *Schema) additional() *Schema {
	if s.AdditionalProperties == nil || s.AdditionalProperties.never {
		return nil
	}
	return s.AdditionalProperties
}

// closed reports whether s, an object, takes only the members it lists.
func (s *Schema) closed() bool {
	return s.Properties != nil && s.additional() == nil || s.AdditionalProperties != nil && s.AdditionalProperties.never
}

// Sub returns s, a schema within root, resolved ($ref followed) and able to
// stand as a root of its own: with root's $defs.
func Sub(root, s *Schema) *Schema {
	r := resolve(root, s)
	if r == nil {
		return &Schema{}
	}
	c := *r
	if c.Defs == nil {
		c.Defs = root.Defs
	}
	return &c
}

// Types is the "type" keyword: one type is written as a string, more as an
// array.
type Types []string

// MarshalJSON writes one type as a string.
func (t Types) MarshalJSON() ([]byte, error) {
	if len(t) == 1 {
		return json.Marshal(t[0])
	}
	return json.Marshal([]string(t))
}

// UnmarshalJSON reads a string or an array of them.
func (t *Types) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*t = Types{one}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(t))
}

// has reports whether t names typ.
func (t Types) has(typ string) bool { return slices.Contains(t, typ) }

// Parse reads a schema published as JSON.
func Parse(b []byte) (*Schema, error) {
	s := new(Schema)
	if err := json.Unmarshal(b, s); err != nil {
		return nil, err
	}
	return s, nil
}

// JSON returns s encoded, compact.
func (s *Schema) JSON() json.RawMessage {
	b, err := json.Marshal(s)
	if err != nil { // a schema For made always encodes
		return json.RawMessage("{}")
	}
	return b
}
