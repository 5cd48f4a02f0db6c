package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

var requestSamples = []string{
	`{"function_call":{"name":"add","args":[5]},"response_queue":"calc:rpc:X7Y2US0A"}`,
	` { "function_call" : { "name" : "add" , "args" : [ 5 , {"a":[1,"]}"]} ] , "kwargs" : { "round" : true } } , "response_queue" : "calc:rpc:A" , "id" : "7" , "deadline" : 1764050000000 , "meta" : {"traceparent":"00-x"} } `,
	`{"response_queue":"calc:rpc:A","function_call":{"kwargs":{"x":"\"}"},"name":"f\u00e9"},"deadline":null}`,
	`{"function_call":{"name":"f"},"response_queue":"calc:rpc:A","id":"a\"b","unknown":[1,{"x":null}],"deadline":1.764e12}`,
	`{"function_call":{"name":"f","args":null,"kwargs":null},"response_queue":"calc:rpc:A","\u0069d":"9"}`,
	`{"function_call":{"name":"f","args":[]},"response_queue":"calc:rpc:A","meta":null,"deadline":5}`,
	`{"function_call":{"name":"f"},"response_queue":"calc:rpc:A","deadline":1764050000000,"sent":1764049999000}`,
}

// TestDecodeRequestMatchesEncodingJSON: the slicing decoder agrees with
// encoding/json on every sample.
func TestDecodeRequestMatchesEncodingJSON(t *testing.T) {
	for _, s := range requestSamples {
		got, err := DecodeRequest(s)
		if err != nil {
			t.Errorf("DecodeRequest(%s): %v", s, err)
			continue
		}
		want := viaEncodingJSON(t, s)
		if !sameRequest(got, want) {
			t.Errorf("DecodeRequest(%s):\n got %+v\nwant %+v", s, got, want)
		}
	}
}

func viaEncodingJSON(t testing.TB, s string) Request {
	var aux struct {
		Request
		Deadline *float64 `json:"deadline"`
		Sent     *float64 `json:"sent"`
	}
	if err := json.Unmarshal([]byte(s), &aux); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	r := aux.Request
	if aux.Deadline != nil {
		r.Deadline = int64(*aux.Deadline)
	}
	if aux.Sent != nil {
		r.Sent = int64(*aux.Sent)
	}
	return r
}

func sameRequest(a, b Request) bool {
	return a.FunctionCall.Name == b.FunctionCall.Name &&
		compact(a.FunctionCall.Args) == compact(b.FunctionCall.Args) &&
		compact(a.FunctionCall.Kwargs) == compact(b.FunctionCall.Kwargs) &&
		a.ResponseQueue == b.ResponseQueue && a.ID == b.ID && a.Deadline == b.Deadline && a.Sent == b.Sent &&
		(len(a.Meta) == 0 && len(b.Meta) == 0 || reflect.DeepEqual(a.Meta, b.Meta))
}

func compact(raw []byte) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var b bytes.Buffer
	json.Compact(&b, raw)
	return b.String()
}

func TestDecodeRequestRejects(t *testing.T) {
	for _, s := range []string{
		``, `not json`, `[1]`, `"x"`, `{"function_call":`, `{}`,
		`{"function_call":{"name":5},"response_queue":"q:rpc:a"}`,
		`{"function_call":[],"response_queue":"q:rpc:a"}`,
		`{"function_call":{"name":"f"},"response_queue":5}`,
		`{"function_call":{"name":"f"},"response_queue":"q:rpc:a","deadline":"soon"}`,
		`{"function_call":{"name":"f"},"response_queue":"q:rpc:a","deadline":-5}`,
		`{"function_call":{"name":"f"},"response_queue":"q:rpc:a","deadline":-5.5}`,
		`{"function_call":{"name":"f"},"response_queue":"q:rpc:a","deadline":0}`,
		`{"function_call":{"name":"f"},"response_queue":"q:rpc:a","deadline":0.5}`,
		`{"function_call":{"name":"f"},"response_queue":"q:rpc:a","deadline":9007199254740992}`,
		`{"function_call":{"name":"f"},"response_queue":"q:rpc:a","deadline":1e300}`,
		`{"function_call":{"name":"f"},"response_queue":"q:rpc:a","deadline":true}`,
		`{"function_call":{"name":"f"},"response_queue":"q:rpc:a","sent":"now"}`,
		`{"function_call":{"name":"f"},"response_queue":"q:rpc:a","sent":-1}`,
		`{"function_call":{"name":"f"},"response_queue":"q:rpc:a","meta":{"a":1}}`,
		`{"function_call":{"name":"f"},"response_queue":"q:rpc:a","attempt":0}`,
		`{"function_call":{"name":"f"},"response_queue":"q:rpc:a","attempt":-2}`,
		`{"function_call":{"name":"f"},"response_queue":"q:rpc:a","attempt":1001}`,
		`{"function_call":{"name":"f"},"response_queue":"q:rpc:a","attempt":2.5}`,
		`{"function_call":{"name":"f"},"response_queue":"q:rpc:a","attempt":1e1}`,
		`{"function_call":{"name":"f"},"response_queue":"q:rpc:a","attempt":"2"}`,
		`{"function_call":{"name":"f"},"response_queue":"q:rpc:a","attempt":true}`,
		`{"function_call":{"name":"f"},"response_queue":"q:rpc:a","attempt":99999999999999999999}`,
	} {
		if _, err := DecodeRequest(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeRequest(%q): got %v, want ErrMalformed", s, err)
		}
	}
	// The response queue is known even when the rest is bad, so the server can answer.
	r, err := DecodeRequest(`{"response_queue":"q:rpc:a","function_call":{"name":7}}`)
	if err == nil || r.ResponseQueue != "q:rpc:a" {
		t.Errorf("got %q, %v; want the response queue and an error", r.ResponseQueue, err)
	}
}

// TestDeadlines: the edges of the deadline rule.
func TestDeadlines(t *testing.T) {
	for raw, want := range map[string]int64{
		"null": 0, "1": 1, "1764050000000": 1764050000000, "1764050000000.9": 1764050000000,
		"1.764e12": 1764000000000, "1.5": 1, "9007199254740991": MaxDeadline,
	} {
		r, err := DecodeRequest(`{"function_call":{"name":"f"},"response_queue":"q:rpc:a","deadline":` + raw + `}`)
		if err != nil || r.Deadline != want {
			t.Errorf("deadline %s: got %d, %v; want %d, nil", raw, r.Deadline, err, want)
		}
	}
}

// TestAttempts: the attempt member, as sent and as the scripts that give
// back an answered request mark it (in front, so that its own wins).
func TestAttempts(t *testing.T) {
	for raw, want := range map[string]int{
		`"attempt":null`: 0, `"attempt":1`: 1, `"attempt":2`: 2, `"attempt":1000`: MaxAttempt,
		`"attempt":2,"function_call":{"name":"f"},"attempt":5`: 5,
	} {
		r, err := DecodeRequest(`{` + raw + `,"function_call":{"name":"f"},"response_queue":"q:rpc:a"}`)
		if err != nil || r.Attempt != want {
			t.Errorf("%s: got %d, %v; want %d, nil", raw, r.Attempt, err, want)
		}
	}
	for _, n := range []int{0, 1, 2, 7} {
		r := Request{FunctionCall: FunctionCall{Name: "f"}, ResponseQueue: "q:rpc:a", Attempt: n}
		got, err := DecodeRequest(string(AppendRequest(nil, &r)))
		if want := n * btoi(n > 1); err != nil || got.Attempt != want {
			t.Errorf("attempt %d sent: decoded %d, %v; want %d", n, got.Attempt, err, want)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestDeadlineOfTime(t *testing.T) {
	for _, tt := range []struct {
		in   time.Time
		want int64
	}{
		{time.UnixMilli(1764050000000), 1764050000000},
		{time.Unix(1<<62, 0), MaxDeadline}, // past what UnixMilli holds
		{time.UnixMilli(MaxDeadline + 1), MaxDeadline},
		{time.Unix(-5, 0), 1},
	} {
		if got := Deadline(tt.in); got != tt.want {
			t.Errorf("Deadline(%v) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// TestOneArgument: Arg is written as an array of one element, which reads
// back as Args.
func TestOneArgument(t *testing.T) {
	in := Request{FunctionCall: FunctionCall{Name: "add", Arg: []byte(`{"a":[1,2]}`)}, ResponseQueue: "calc:rpc:K3"}
	b := AppendRequest(nil, &in)
	out, err := DecodeRequest(string(b))
	if err != nil {
		t.Fatalf("DecodeRequest(%s): %v", b, err)
	}
	if got, want := string(out.FunctionCall.Args), `[{"a":[1,2]}]`; got != want {
		t.Errorf("args of %s: got %s, want %s", b, got, want)
	}
}

func TestRequestRoundTrip(t *testing.T) {
	in := Request{
		FunctionCall:  FunctionCall{Name: "gr\"eet\n", Args: []byte(`[1,"two"]`), Kwargs: []byte(`{"a":1}`)},
		ResponseQueue: "calc:rpc:ÅB", ID: "1f", Deadline: 1764050000000, Meta: map[string]string{"k": "v"}, Sent: 1764049999999,
	}
	b := AppendRequest(nil, &in)
	if !json.Valid(b) {
		t.Fatalf("AppendRequest wrote invalid JSON: %s", b)
	}
	out, err := DecodeRequest(string(b))
	if err != nil || !sameRequest(in, out) {
		t.Errorf("round trip of %s: got %+v, %v", b, out, err)
	}
	if want := viaEncodingJSON(t, string(b)); !sameRequest(want, out) {
		t.Errorf("encoding/json reads %s as %+v", b, want)
	}
}

// TestRequestSize: RequestSize is exact where nothing needs escaping, and
// short only where something does.
func TestRequestSize(t *testing.T) {
	base := Request{FunctionCall: FunctionCall{Name: "add"}, ResponseQueue: "calc:rpc:K3"}
	full := base
	full.FunctionCall.Args, full.FunctionCall.Kwargs = json.RawMessage(`[1,{"a":2}]`), json.RawMessage(`{"b":3}`)
	full.ID, full.Deadline, full.Sent, full.Attempt = "1f", 1764050000000, 1764049999000, 12
	full.Meta = map[string]string{"traceparent": "00-ab-cd-01", "k": ""}
	negative := base
	negative.Deadline, negative.Sent = -15, math.MinInt64
	escaped := base
	escaped.FunctionCall.Name = "a\"b\n"
	one := base
	one.FunctionCall.Arg = json.RawMessage(`{"a":[2]}`)
	for _, tc := range []struct {
		name  string
		r     Request
		exact bool
	}{{"minimal", base, true}, {"every member", full, true}, {"negative times", negative, true}, {"escaped", escaped, false}, {"one argument", one, true}} {
		got, want := RequestSize(&tc.r), len(AppendRequest(nil, &tc.r))
		if tc.exact && got != want || !tc.exact && got >= want {
			t.Errorf("%s: RequestSize = %d, AppendRequest wrote %d", tc.name, got, want)
		}
	}
}

func TestResponseRoundTrip(t *testing.T) {
	for _, in := range []Response{
		Success("", nil), Success("1f", []byte(`{"x":[1,2]}`)),
		Failure("", "", "boom"), Failure("a\"b", "not_found", "no \"f\""),
		{Exception: []byte(`"out of stock"`), Code: "out_of_stock", Details: []byte(`{"item":"x","left":2}`), ID: "9"},
	} {
		b := AppendResponse(nil, &in)
		var std Response
		if err := json.Unmarshal(b, &std); err != nil {
			t.Fatalf("AppendResponse wrote invalid JSON %s: %v", b, err)
		}
		out, err := DecodeResponse(string(b))
		if err != nil || out.ID != in.ID || out.Code != in.Code || compact(out.ReturnValue) != compact(in.ReturnValue) ||
			compact(out.Exception) != compact(in.Exception) || compact(out.Details) != compact(in.Details) ||
			compact(std.Details) != compact(in.Details) || std.ID != in.ID {
			t.Errorf("round trip of %s: got %+v, %v", b, out, err)
		}
		id, err := ResponseID(string(b))
		if err != nil || id != in.ID {
			t.Errorf("ResponseID(%s): got %q, %v; want %q", b, id, err, in.ID)
		}
	}
	if id, err := ResponseID(`{"return_value":1,"backtrace":["x"],"id":"zz"}`); err != nil || id != "zz" {
		t.Errorf("ResponseID of a reordered response: got %q, %v; want zz", id, err)
	}
}

func TestSplitArray(t *testing.T) {
	for in, want := range map[string]string{
		`[]`: ``, `[1]`: `1`, ` [ 1 , "a,]" , [2,[3]] , {"b":"}"} , null ] `: `1|"a,]"|[2,[3]]|{"b":"}"}|null`,
	} {
		var parts []string
		for _, p := range SplitArray([]byte(in)) {
			parts = append(parts, string(p))
		}
		if got := strings.Join(parts, "|"); got != want {
			t.Errorf("SplitArray(%s): got %s, want %s", in, got, want)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range requestSamples {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRequest(string(data))
		if err != nil {
			return
		}
		fc := r.FunctionCall
		fc.ArgsJSON() // must not panic
		// What decodes re-encodes as valid JSON that decodes the same.
		b := AppendRequest(nil, &r)
		if !json.Valid(b) {
			t.Fatalf("AppendRequest wrote invalid JSON %q", b)
		}
		again, err := DecodeRequest(string(b))
		if err != nil || !sameRequest(r, again) {
			t.Fatalf("round trip of %q: got %+v, %v; want %+v", b, again, err, r)
		}
	})
}

// TestPeekReplyReadsInPlace: a request over the size limit is answered from
// its envelope without copying the message.
func TestPeekReplyReadsInPlace(t *testing.T) {
	big := `{"id":"9","function_call":{"name":"f","args":["` + strings.Repeat("x", 10<<20) + `"]},"response_queue":"q:rpc:a"}`
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	queue, id := PeekReply(big)
	runtime.ReadMemStats(&after)
	if queue != "q:rpc:a" || id != "9" {
		t.Errorf("PeekReply: got %q, %q; want q:rpc:a, 9", queue, id)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Errorf("PeekReply of 10 MiB allocated %d bytes, want far less than the message (no copy)", n)
	}
	for _, s := range []string{``, `{`, `{"response_queue"`, `{"response_queue":`, `{"a":[1,{"b":"}"}],"response_queue":"q:rpc:b"}`, `[1]`} {
		PeekReply(s) // must not panic
	}
	if q, _ := PeekReply(`{"a":[1,{"b":"}"}],"response_queue":"q:rpc:b"}`); q != "q:rpc:b" {
		t.Errorf("PeekReply past nested members: got %q, want q:rpc:b", q)
	}
}

func FuzzPeekReply(f *testing.F) {
	for _, s := range requestSamples {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		PeekReply(string(data)) // must not panic or loop on any input
	})
}

// TestLongStrings puts each byte that matters to a string at every offset
// of strings long enough to be scanned eight bytes at a time, and holds the
// scanner, the skipper and the decoder to encoding/json.
func TestLongStrings(t *testing.T) {
	for _, special := range []string{`"`, `\\`, `\"`, `\u00e9`, `\x`, "\n", "\x00", "\x1f", "\x7f", "\xff", "é", " ", "\\"} {
		for n := 0; n < 40; n++ {
			for at := 0; at <= n; at++ {
				body := strings.Repeat("a", at) + special + strings.Repeat("b", n-at)
				doc := `{"response_queue":"q:rpc:a","function_call":{"name":"f","args":["` + body + `",1]}}`
				if got, want := Valid([]byte(doc)), json.Valid([]byte(doc)); got != want {
					t.Fatalf("Valid(%q) = %v, json.Valid says %v", doc, got, want)
				}
				if !json.Valid([]byte(doc)) {
					continue
				}
				r, err := DecodeRequest(doc)
				if err != nil {
					t.Fatalf("DecodeRequest(%q): %v", doc, err)
				}
				if want := viaEncodingJSON(t, doc); !sameRequest(r, want) {
					t.Fatalf("DecodeRequest(%q):\n got %+v\nwant %+v", doc, r, want)
				}
				if parts := SplitArray(r.FunctionCall.Args); len(parts) != 2 || string(parts[1]) != "1" {
					t.Fatalf("SplitArray(%s): got %q, want 2 elements, the last 1", r.FunctionCall.Args, parts)
				}
			}
		}
	}
}

// FuzzValid holds the scanner to encoding/json's Valid on every input.
func FuzzValid(f *testing.F) {
	for _, s := range append(requestSamples, ``, ` `, `1`, `-0.5e+7`, `01`, `1.`, `.5`, `-`, `1e`, `"\u00e9"`, `"\u00g9"`, `"a\tb"`,
		`"\x"`, `[1,]`, `{"a":1,}`, `{"a" 1}`, `[[[]]]`, `tru`, `nulll`, `{} {}`, "\"\xff\"", `{"a":[1,{"b":null}],"c":"\\\""}`) {
		f.Add([]byte(s))
	}
	f.Add([]byte(strings.Repeat("[", 10000) + strings.Repeat("]", 10000)))
	f.Add([]byte(strings.Repeat("[", 10001) + strings.Repeat("]", 10001)))
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, want := Valid(data), json.Valid(data); got != want {
			t.Fatalf("Valid(%q) = %v, json.Valid says %v", data, got, want)
		}
		if json.Valid(data) {
			return
		}
		if _, err := DecodeRequest(string(data)); err == nil {
			t.Fatalf("DecodeRequest(%q) accepted what is not JSON", data)
		}
		if _, err := DecodeResponse(string(data)); err == nil {
			t.Fatalf("DecodeResponse(%q) accepted what is not JSON", data)
		}
	})
}

// BenchmarkDecodeRequest decodes typical requests and splits their arguments:
// what a server does per call before the handler's own argument decoding.
func BenchmarkDecodeRequest(b *testing.B) {
	for _, size := range []int{40, 64 << 10} {
		msg := `{"function_call":{"name":"echo","args":[{"id":7,"data":"` + strings.Repeat("x", size) + `"}]},"response_queue":"bench:rpc:K3P0Q9ZX2M7B4N6V8C1D","id":"1f3","deadline":1764050000000}`
		b.Run(fmt.Sprintf("data=%d", size), func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				r, err := DecodeRequest(msg)
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := r.FunctionCall.ArgsJSON(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
