package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Unknown returns the members of data, a JSON value, that a type of schema
// s has no field for, as paths (see Diff), sorted; nil where data is not
// JSON. Members of maps and of unconstrained values are never unknown.
func Unknown(s *Schema, data []byte) []string {
	var v any
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if d.Decode(&v) != nil {
		return nil
	}
	var out []string
	unknown(s, s, v, "", &out, 0)
	slices.Sort(out)
	return slices.Compact(out)
}

func unknown(root, s *Schema, v any, path string, out *[]string, depth int) {
	s = resolve(root, s)
	if s == nil || depth > 64 {
		return
	}
	switch v := v.(type) {
	case []any:
		for _, item := range v {
			unknown(root, s.Items, item, path+"[]", out, depth+1)
		}
	case map[string]any:
		if a := s.additional(); a != nil {
			for _, item := range v {
				unknown(root, a, item, join(path, "{}"), out, depth+1)
			}
			return
		}
		if !s.closed() {
			return // any member
		}
		for _, name := range slices.Sorted(maps.Keys(v)) {
			field, ok := Member(s.Properties, name)
			if !ok {
				*out = append(*out, join(path, name))
				continue
			}
			unknown(root, s.Properties[field], v[name], join(path, name), out, depth+1)
		}
	}
}

// Describe writes s briefly, for a person: {item: string, qty?: integer}
// for a struct (? where a member may be left out), []string, map[string]number,
// a named type by its Go name below the top, any for no constraint.
func Describe(s *Schema) string {
	var b strings.Builder
	describe(&b, s, s, 0)
	return b.String()
}

func describe(b *strings.Builder, root, s *Schema, depth int) {
	if s != nil && s.Ref != "" && depth > 0 {
		r := resolve(root, s)
		if r != nil && r.Title != "" {
			b.WriteString(r.Title)
			return
		}
	}
	s = resolve(root, s)
	if s == nil {
		b.WriteString("any")
		return
	}
	types := s.types()
	switch {
	case len(types) == 0:
		b.WriteString("any")
	case len(types) > 1:
		b.WriteString(strings.Join(types, "|"))
	case types[0] == "array":
		b.WriteString("[]")
		describe(b, root, s.Items, depth+1)
	case types[0] == "object" && s.additional() != nil:
		b.WriteString("map[string]")
		describe(b, root, s.additional(), depth+1)
	case types[0] == "object":
		if depth > 0 && s.Title != "" {
			b.WriteString(s.Title)
			return
		}
		b.WriteString("{")
		for i, name := range order(s) {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(name)
			if !slices.Contains(s.Required, name) {
				b.WriteString("?")
			}
			b.WriteString(": ")
			describe(b, root, s.Properties[name], depth+1)
		}
		b.WriteString("}")
	case s.Format != "":
		fmt.Fprintf(b, "%s (%s)", types[0], s.Format)
	default:
		b.WriteString(types[0])
	}
}

// order is the members of s: the required first, as the type declares them,
// then the others by name.
func order(s *Schema) []string {
	names := slices.Clone(s.Required)
	for _, name := range slices.Sorted(maps.Keys(s.Properties)) {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return names
}

// Example returns a JSON value that fits s, with every member of its
// objects, for a form to start from: "" for strings, 0, false, [] and {}.
func Example(s *Schema) json.RawMessage {
	b, err := json.Marshal(example(s, s, 0))
	if err != nil {
		return json.RawMessage("null")
	}
	return b
}

func example(root, s *Schema, depth int) any {
	if s != nil && len(s.AnyOf) > 0 && depth > 0 {
		return nil // a pointer: nil
	}
	s = resolve(root, s)
	if s == nil || depth > 8 {
		return nil
	}
	types := s.types()
	if len(types) == 0 {
		return nil
	}
	switch types[0] {
	case "string":
		switch {
		case len(s.Enum) > 0:
			return s.Enum[0]
		case s.Format == "date-time":
			return "2006-01-02T15:04:05Z"
		case s.Pattern == quotedString:
			return `""`
		case s.Pattern != "": // a number written as a string (",string")
			return "0"
		}
		return ""
	case "integer", "number":
		return 0
	case "boolean":
		return false
	case "array":
		return []any{}
	case "object":
		obj := map[string]any{}
		for name, p := range s.Properties {
			obj[name] = example(root, p, depth+1)
		}
		return obj
	}
	return nil
}
