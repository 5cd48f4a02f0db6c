package schema

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Kind is the way two sides of a message differ.
type Kind uint8

const (
	// Lacks: the sender writes a member the reader's type has no field for.
	Lacks Kind = iota + 1
	// Unread: the reader has a field for a member the sender never writes.
	Unread
	// Mistyped: the sender writes a value of a type the reader cannot read.
	Mistyped
)

// Diff is one way a sender's schema and a reader's differ. Path names the
// member as a dotted path, "[]" standing for the items of an array and "{}"
// for the values of a map; it is "" for the message itself.
type Diff struct {
	Kind           Kind
	Path           string
	Sent, Readable string // for Mistyped: what is sent, what is read, as "a string"
}

// Compare returns how a message written by the type of sender differs from
// what the type of reader reads, by name and JSON type: members the reader
// lacks, members it reads that the sender never writes, and values of types
// it cannot read. Unconstrained schemas (any, Marshaler types) fit anything;
// null is not counted, as encoding/json reads it into anything; a member is
// read where a field's name matches it, without regard to case, as
// encoding/json reads. Diffs come sorted by path.
func Compare(sender, reader *Schema) []Diff {
	c := &comparison{sender: sender, reader: reader, seen: map[[2]*Schema]bool{}}
	c.compare(sender, reader, "")
	slices.SortStableFunc(c.diffs, func(a, b Diff) int { return cmp.Or(cmp.Compare(a.Kind, b.Kind), strings.Compare(a.Path, b.Path)) })
	return c.diffs
}

type comparison struct {
	sender, reader *Schema // the roots, for $ref
	seen           map[[2]*Schema]bool
	diffs          []Diff
}

func (c *comparison) compare(s, r *Schema, path string) {
	s, r = resolve(c.sender, s), resolve(c.reader, r)
	if s == nil || r == nil || c.seen[[2]*Schema{s, r}] {
		return
	}
	c.seen[[2]*Schema{s, r}] = true // a type within itself: compared once
	defer delete(c.seen, [2]*Schema{s, r})
	st, rt := s.types(), r.types()
	if len(st) == 0 || len(rt) == 0 {
		return // either takes anything
	}
	for _, t := range st {
		if !slices.Contains(rt, t) && (t != "integer" || !slices.Contains(rt, "number")) {
			c.diffs = append(c.diffs, Diff{Kind: Mistyped, Path: path, Sent: article(st), Readable: article(rt)})
			return
		}
	}
	if slices.Contains(st, "array") && slices.Contains(rt, "array") {
		c.compare(s.Items, r.Items, path+"[]")
	}
	if !slices.Contains(st, "object") || !slices.Contains(rt, "object") {
		return
	}
	sa, ra := s.additional(), r.additional()
	switch {
	case sa != nil && ra != nil: // two maps
		c.compare(sa, ra, join(path, "{}"))
	case sa != nil: // a map into a struct: any member may come
		for _, name := range slices.Sorted(maps.Keys(r.Properties)) {
			c.compare(sa, r.Properties[name], join(path, name))
		}
	case ra != nil: // a struct into a map
		for _, name := range slices.Sorted(maps.Keys(s.Properties)) {
			c.compare(s.Properties[name], ra, join(path, name))
		}
	case !s.closed() || !r.closed():
		// An object that lists no members (a type that describes itself
		// as any object) sends, or takes, any.
	default:
		read := map[string]bool{}
		for _, name := range slices.Sorted(maps.Keys(s.Properties)) {
			match, ok := Member(r.Properties, name)
			if !ok {
				c.diffs = append(c.diffs, Diff{Kind: Lacks, Path: join(path, name)})
				continue
			}
			read[match] = true
			c.compare(s.Properties[name], r.Properties[match], join(path, name))
		}
		for _, name := range slices.Sorted(maps.Keys(r.Properties)) {
			if !read[name] {
				c.diffs = append(c.diffs, Diff{Kind: Unread, Path: join(path, name)})
			}
		}
	}
}

// CompareOrNone is Compare where sender may be nil: nothing is sent, and
// a reader of an object reads each of its members from nothing.
func CompareOrNone(sender, reader *Schema) []Diff {
	if sender == nil {
		return nil
	}
	return Compare(sender, reader)
}

// Accepts reports whether a value of JSON type typ fits s's type: any does.
func Accepts(s *Schema, typ string) bool {
	r := resolve(s, s)
	if r == nil {
		return true
	}
	types := r.types()
	return len(types) == 0 || slices.Contains(types, typ) || typ == "integer" && slices.Contains(types, "number")
}

// Member returns the name of the field of properties that reads a member
// called name, as encoding/json chooses it: the same name, else one that is
// the same without regard to case.
func Member(properties map[string]*Schema, name string) (string, bool) {
	if _, ok := properties[name]; ok {
		return name, true
	}
	for _, p := range slices.Sorted(maps.Keys(properties)) {
		if strings.EqualFold(p, name) {
			return p, true
		}
	}
	return "", false
}

// resolve follows s's $ref within root, and takes an anyOf of one schema and
// null as the schema.
func resolve(root, s *Schema) *Schema {
	for range 32 { // a $ref to a $ref, at most so deep
		switch {
		case s == nil:
			return nil
		case s.Ref == "#":
			s = root
		case strings.HasPrefix(s.Ref, "#/$defs/"):
			s = root.Defs[strings.TrimPrefix(s.Ref, "#/$defs/")]
		case s.Ref != "":
			return &Schema{} // elsewhere: unknown, so anything
		case len(s.AnyOf) > 0:
			var other *Schema
			for _, a := range s.AnyOf {
				if !slices.Equal(a.Type, Types{"null"}) {
					if other != nil {
						return &Schema{} // a real choice: not compared
					}
					other = a
				}
			}
			s = other
		default:
			return s
		}
	}
	return &Schema{}
}

// types returns the types s allows other than null; none where it allows
// any.
func (s *Schema) types() []string {
	var out []string
	for _, t := range s.Type {
		if t != "null" {
			out = append(out, t)
		}
	}
	return out
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// article names JSON types for a sentence: "a string", "an integer or a
// string".
func article(types []string) string {
	words := make([]string, len(types))
	for i, t := range types {
		switch t {
		case "integer", "object", "array":
			words[i] = "an " + t
		default:
			words[i] = "a " + t
		}
	}
	return strings.Join(words, " or ")
}

// Text says d, with the names of the two sides ("the client", "the server")
// and of the message ("request"), as a clause: the client sends "qty", which
// the server's request type lacks.
func (d Diff) Text(sender, reader, message string) string {
	switch d.Kind {
	case Lacks:
		return fmt.Sprintf("%s sends %q, which %s's %s type lacks", sender, d.Path, reader, message)
	case Unread:
		return fmt.Sprintf("%s reads %q, which %s never sends", reader, d.Path, sender)
	}
	if d.Path == "" {
		return fmt.Sprintf("%s sends %s as the %s, which %s reads as %s", sender, d.Sent, message, reader, d.Readable)
	}
	return fmt.Sprintf("%s sends %q as %s, which %s reads as %s", sender, d.Path, d.Sent, reader, d.Readable)
}
