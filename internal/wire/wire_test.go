package wire

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestArgsJSON(t *testing.T) {
	tests := []struct {
		name       string
		call       string
		data, alt  string
		wantBadArg bool
	}{
		{name: "none", call: `{"name":"f"}`},
		{name: "null args and kwargs", call: `{"name":"f","args":null,"kwargs":null}`},
		{name: "empty args and kwargs", call: `{"name":"f","args":[],"kwargs":{}}`},
		{name: "one positional", call: `{"name":"f","args":[5]}`, data: `5`, alt: `[5]`},
		{name: "several positional", call: `{"name":"f","args":[3, 4]}`, data: `[3, 4]`},
		{name: "named", call: `{"name":"f","kwargs":{"a":1}}`, data: `{"a":1}`, alt: `1`},
		{name: "named and empty args", call: `{"name":"f","args":[],"kwargs":{"a":1}}`, data: `{"a":1}`, alt: `1`},
		{name: "two named", call: `{"name":"f","kwargs":{"a":1, "b":[2]}}`, data: `{"a":1, "b":[2]}`},
		{name: "one named, spaced", call: `{"name":"f","kwargs":{ "a" : [1, {"b":2}] }}`, data: `{ "a" : [1, {"b":2}] }`, alt: `[1, {"b":2}]`},
		{name: "both", call: `{"name":"f","args":[1],"kwargs":{"a":1}}`, wantBadArg: true},
		{name: "args not an array", call: `{"name":"f","args":5}`, wantBadArg: true},
		{name: "kwargs not an object", call: `{"name":"f","kwargs":[1]}`, wantBadArg: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fc FunctionCall
			if err := json.Unmarshal([]byte(tt.call), &fc); err != nil {
				t.Fatal(err)
			}
			data, alt, err := fc.ArgsJSON()
			if tt.wantBadArg {
				if !errors.Is(err, ErrBadArgs) {
					t.Fatalf("got error %v, want ErrBadArgs", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if string(data) != tt.data || string(alt) != tt.alt {
				t.Errorf("got data %q alt %q, want %q and %q", data, alt, tt.data, tt.alt)
			}
		})
	}
}

func TestValidResponseQueue(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"calc:rpc:X7Y2US0A", true},
		{"calc:rpc:", false},
		{"calc", false},
		{"calcx:rpc:A", false},
		{"other:rpc:A", false},
		{"calc:rpc:" + string(make([]byte, 201)), false},
		{"xcalc:rpc:A", false},
	}
	for _, tt := range tests {
		if got := ValidResponseQueue("calc", tt.name); got != tt.want {
			t.Errorf("ValidResponseQueue(calc, %.30q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestResponseShape(t *testing.T) {
	tests := []struct {
		resp Response
		want string
	}{
		{Success("", nil), `{"return_value":null}`},
		{Success("7", []byte(`4`)), `{"return_value":4,"id":"7"}`},
		{Failure("", "", "boom"), `{"exception":"boom"}`},
		{Failure("7", "not_found", "no function"), `{"exception":"no function","code":"not_found","id":"7"}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.resp)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tt.want {
			t.Errorf("got %s, want %s", b, tt.want)
		}
	}
}

func TestResponseMessage(t *testing.T) {
	var r Response
	if err := json.Unmarshal([]byte(`{"exception":{"type":"ZeroDivisionError"},"backtrace":["x"]}`), &r); err != nil {
		t.Fatal(err)
	}
	if !r.Failed() {
		t.Fatal("got Failed() false, want true")
	}
	if got, want := r.Message(), `{"type":"ZeroDivisionError"}`; got != want {
		t.Errorf("got message %q, want %q", got, want)
	}
}
