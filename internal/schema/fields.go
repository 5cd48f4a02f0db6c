package schema

import (
	"cmp"
	"reflect"
	"slices"
	"strings"
	"unicode"
)

// field is a struct field as encoding/json encodes it.
type field struct {
	name   string
	tagged bool // named by its tag
	index  []int
	typ    reflect.Type
	omit   bool // omitempty or omitzero: not always written
	quoted bool // ",string"
}

// fields returns the fields encoding/json encodes for struct t, by its rules:
// those of embedded structs are promoted, breadth first, and of fields with
// one name the shallowest wins, then the tagged one, and where that leaves
// more than one, none.
func fields(t reflect.Type) []field {
	type level struct {
		typ   reflect.Type
		index []int
		ptr   bool // reached through an embedded pointer: nil leaves its fields out
	}
	var all []field
	next := []level{{typ: t}}
	visited := map[reflect.Type]bool{}
	for count := map[reflect.Type]int{}; len(next) > 0; {
		current := next
		next = nil
		nextCount := map[reflect.Type]int{}
		for _, l := range current {
			if visited[l.typ] {
				continue
			}
			visited[l.typ] = true
			for i := range l.typ.NumField() {
				sf := l.typ.Field(i)
				if sf.Anonymous {
					et := sf.Type
					if et.Kind() == reflect.Pointer {
						et = et.Elem()
					}
					if !sf.IsExported() && et.Kind() != reflect.Struct {
						continue
					}
				} else if !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, opts, _ := strings.Cut(tag, ",")
				if !validName(name) {
					name = ""
				}
				index := append(slices.Clip(l.index), i)
				ft := sf.Type
				if ft.Name() == "" && ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if name == "" && sf.Anonymous && ft.Kind() == reflect.Struct {
					nextCount[ft]++
					if nextCount[ft] == 1 {
						next = append(next, level{typ: ft, index: index, ptr: l.ptr || sf.Type.Kind() == reflect.Pointer})
					}
					continue
				}
				f := field{name: name, tagged: name != "", index: index, typ: sf.Type, omit: l.ptr}
				if f.name == "" {
					f.name = sf.Name
				}
				for o := range strings.SplitSeq(opts, ",") {
					switch o {
					case "omitempty", "omitzero":
						f.omit = true
					case "string":
						switch ft.Kind() {
						case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
							reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
							reflect.Float32, reflect.Float64, reflect.String:
							f.quoted = true
						}
					}
				}
				all = append(all, f)
				if count[l.typ] > 1 {
					// The struct is embedded twice at this depth: its
					// fields clash with themselves, and none is encoded.
					all = append(all, f)
				}
			}
		}
		count = nextCount
	}
	slices.SortStableFunc(all, func(a, b field) int {
		return cmp.Or(strings.Compare(a.name, b.name), cmp.Compare(len(a.index), len(b.index)), boolFirst(a.tagged, b.tagged), slices.Compare(a.index, b.index))
	})
	var out []field
	for group := range chunkBy(all, func(f field) string { return f.name }) {
		if len(group) > 1 && len(group[0].index) == len(group[1].index) && group[0].tagged == group[1].tagged {
			continue // ambiguous: encoding/json encodes neither
		}
		out = append(out, group[0])
	}
	slices.SortFunc(out, func(a, b field) int { return slices.Compare(a.index, b.index) })
	return out
}

func boolFirst(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return -1
	}
	return 1
}

// chunkBy yields the runs of s with one key.
func chunkBy[T any](s []T, key func(T) string) func(func([]T) bool) {
	return func(yield func([]T) bool) {
		for i := 0; i < len(s); {
			j := i + 1
			for j < len(s) && key(s[j]) == key(s[i]) {
				j++
			}
			if !yield(s[i:j]) {
				return
			}
			i = j
		}
	}
}

// validName reports whether encoding/json takes name from a tag.
func validName(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range name {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
		case !unicode.IsLetter(c) && !unicode.IsDigit(c):
			return false
		}
	}
	return true
}
