package redisrpctest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/redisrpc/redisrpc/redisrpctest"
)

// codec is encoding/json, changed by its flags.
type codec struct {
	noEscape bool // Marshal: no HTML escaping, as some fast libraries do
	indent   bool // Marshal: indented
	strict   bool // Unmarshal: unknown fields are errors
	lenient  bool // Unmarshal: errors are ignored
	stringly bool // Marshal: every value as a string
}

func (c codec) Marshal(v any) ([]byte, error) {
	switch {
	case c.stringly:
		return json.Marshal(fmt.Sprint(v))
	case c.indent:
		return json.MarshalIndent(v, "", "  ")
	case c.noEscape:
		var b bytes.Buffer
		e := json.NewEncoder(&b)
		e.SetEscapeHTML(false)
		err := e.Encode(v)
		return bytes.TrimSuffix(b.Bytes(), []byte("\n")), err
	}
	return json.Marshal(v)
}

func (c codec) Unmarshal(data []byte, v any) error {
	if c.strict {
		d := json.NewDecoder(bytes.NewReader(data))
		d.DisallowUnknownFields()
		return d.Decode(v)
	}
	err := json.Unmarshal(data, v)
	if c.lenient {
		return nil
	}
	return err
}

// recorder is a testing.TB that keeps what Errorf says.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

// TestCheckCodec: CheckCodec passes encoding/json however it is spaced or
// escaped, and fails codecs that decode or encode otherwise.
func TestCheckCodec(t *testing.T) {
	for _, tc := range []struct {
		name  string
		codec codec
		want  string // in an error, or "" for none
	}{
		{"encoding/json", codec{}, ""},
		{"without HTML escaping", codec{noEscape: true}, ""},
		{"indented", codec{indent: true}, ""},
		{"strict about unknown fields", codec{strict: true}, `Unmarshal of {"a":1}`},
		{"ignoring errors", codec{lenient: true}, `Unmarshal of {"name":5}`},
		{"stringly", codec{stringly: true}, "Marshal of a tagged struct"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{TB: t}
			redisrpctest.CheckCodec(r, tc.codec)
			all := strings.Join(r.errors, "\n")
			switch {
			case tc.want == "" && len(r.errors) > 0:
				t.Errorf("got errors:\n%s\nwant none", all)
			case tc.want != "" && !strings.Contains(all, tc.want):
				t.Errorf("got errors:\n%s\nwant one with %q", all, tc.want)
			}
		})
	}
}
