package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestStory: the shop tells its story, and every step went as it says.
func TestStory(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"-calls", "200"}, &out, &out); err != nil {
		t.Fatalf("shop: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"placed o-1; 7 apples left",
		"refused: redisrpc: place_order: out_of_stock: apple: 100 wanted, 7 left",
		"details: wanted 100, 7 left",
		"gave up after 100ms",
		"200 placed, 0 failed",
		"drained: 20 of 20 orders in flight completed, none lost",
		`msg="order placed" order=o-1 request=1`,
		`level=INFO msg="redisrpc: call" side=server queue=inventory function=reserve id=1`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the story lacks %q:\n%s", want, out.String())
		}
	}
}

// span is what the test reads of stdouttrace's JSON.
type span struct {
	Name        string
	SpanKind    int
	SpanContext struct{ TraceID, SpanID string }
	Parent      struct {
		TraceID, SpanID string
		Remote          bool
	}
}

// TestTrace: with -trace, stdout holds only spans, one JSON object a line,
// and the first order's four spans form one trace across both hops.
func TestTrace(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run([]string{"-trace", "-calls", "20"}, &stdout, &stderr); err != nil {
		t.Fatalf("shop -trace: %v\n%s", err, stderr.String())
	}
	byID := map[string]span{}
	var spans []span
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var s span
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("a line of stdout is not a span: %v\n%s", err, sc.Text())
		}
		spans = append(spans, s)
		byID[s.SpanContext.SpanID] = s
	}
	// 1 and 2 are the first order's spans inside (server) and outside
	// (client); follow the first inventory server span up to its root.
	var chain []string
	for _, s := range spans {
		if s.Name == "inventory/reserve" && s.SpanKind == 2 {
			for cur, ok := s, true; ok; cur, ok = byID[cur.Parent.SpanID] {
				if cur.SpanContext.TraceID != s.SpanContext.TraceID {
					t.Fatalf("span %s is in another trace", cur.Name)
				}
				kind := map[int]string{2: "server", 3: "client"}[cur.SpanKind]
				chain = append(chain, cur.Name+" "+kind)
			}
			break
		}
	}
	want := "inventory/reserve server < inventory/reserve client < orders/place_order server < orders/place_order client"
	if got := strings.Join(chain, " < "); got != want {
		t.Errorf("the first order's trace:\n got %s\nwant %s", got, want)
	}
	if !strings.Contains(stderr.String(), "drained: 20 of 20") {
		t.Errorf("the story on stderr lacks the drain:\n%s", stderr.String())
	}
}
