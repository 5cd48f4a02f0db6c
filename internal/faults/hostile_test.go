package faults_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/internal/keys"
)

// TestHostileInput pushes bad requests straight onto the queue. Each is either
// answered with the code given, or dropped ("" code) with nothing written;
// the server keeps serving and never writes outside <queue>:rpc: and its own
// keys.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	serve(t, rc, q, redisrpc.WithMaxMessageSize(64<<10))
	rq := func(i int) string { return fmt.Sprintf("%s:rpc:h%d", q, i) }
	env := func(i int, call string) string {
		return fmt.Sprintf(`{"response_queue":%q,"function_call":%s}`, rq(i), call)
	}
	nested := strings.Repeat("[", 5000) + strings.Repeat("]", 5000)
	tooDeep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	many := "[" + strings.Repeat("1,", 4999) + "1]"
	tests := []struct {
		name, body string
		want       string // a code, "ok" for a return value, "" for no response
	}{
		{"nested 5000 deep", env(0, `{"name":"slow","args":[`+nested+`]}`), "invalid_argument"},
		{"nested past the decoder's limit", env(1, `{"name":"slow","args":[`+tooDeep+`]}`), "invalid_argument"},
		{"invalid UTF-8 in the name", env(2, "{\"name\":\"sl\xffow\",\"args\":[1]}"), "not_found"},
		{"invalid UTF-8 in an argument", env(3, "{\"name\":\"slow\",\"args\":[\"\xff\"]}"), "invalid_argument"},
		{"5000 arguments", env(4, `{"name":"slow","args":`+many+`}`), "invalid_argument"},
		{"unknown members", fmt.Sprintf(`{"response_queue":%q,"x":{"y":[1,2]},"function_call":{"name":"slow","args":[1],"z":null},"id":"7","w":"v"}`, rq(5)), "ok"},
		{"over the size limit", env(6, `{"name":"slow","args":["`+strings.Repeat("x", 70<<10)+`"]}`), "invalid_argument"},
		{"trailing garbage", env(7, `{"name":"slow","args":[1]}`) + ` garbage`, "invalid_argument"},
		{"name not a string", env(8, `{"name":["slow"]}`), "invalid_argument"},
		{"deadline not a number", fmt.Sprintf(`{"response_queue":%q,"function_call":{"name":"slow"},"deadline":"soon"}`, rq(9)), "invalid_argument"},
		{"huge deadline", fmt.Sprintf(`{"response_queue":%q,"function_call":{"name":"slow"},"deadline":1e300}`, rq(10)), "invalid_argument"},
		{"meta not strings", fmt.Sprintf(`{"response_queue":%q,"function_call":{"name":"slow"},"meta":{"a":{}}}`, rq(11)), "invalid_argument"},
		{"response queue of another service", `{"response_queue":"other:rpc:x","function_call":{"name":"slow","args":[1]}}`, ""},
		{"response queue is the request queue", fmt.Sprintf(`{"response_queue":%q,"function_call":{"name":"slow","args":[1]}}`, q), ""},
		{"empty response queue suffix", fmt.Sprintf(`{"response_queue":%q,"function_call":{"name":"slow","args":[1]}}`, q+":rpc:"), ""},
		{"response queue not a string", `{"response_queue":["x"],"function_call":{"name":"slow","args":[1]}}`, ""},
		{"binary", "\x00\xff\xfe{", ""},
		{"empty", "", ""},
		{"JSON null", "null", ""},
		{"negative deadline", fmt.Sprintf(`{"response_queue":%q,"function_call":{"name":"slow","args":[1]},"deadline":-5}`, rq(19)), "invalid_argument"},
		{"deadline below 1 ms", fmt.Sprintf(`{"response_queue":%q,"function_call":{"name":"slow","args":[1]},"deadline":0.5}`, rq(20)), "invalid_argument"},
		{"deadline past 2^53-1", fmt.Sprintf(`{"response_queue":%q,"function_call":{"name":"slow","args":[1]},"deadline":9007199254740992}`, rq(21)), "invalid_argument"},
		{"latest deadline", fmt.Sprintf(`{"response_queue":%q,"function_call":{"name":"slow","args":[1]},"deadline":9007199254740991}`, rq(22)), "ok"},
		{"fractional deadline", fmt.Sprintf(`{"response_queue":%q,"function_call":{"name":"slow","args":[1]},"deadline":%d.5}`, rq(23), time.Now().Add(time.Minute).UnixMilli()), "ok"},
	}
	ctx := context.Background()
	for i, tt := range tests {
		if err := rc.Do(ctx, rc.B().Rpush().Key(q).Element(tt.body).Build()).Error(); err != nil {
			t.Fatal(err)
		}
		if tt.want == "" {
			continue
		}
		kv, err := rc.Do(ctx, rc.B().Blpop().Key(rq(i)).Timeout(5).Build()).AsStrSlice()
		if err != nil {
			t.Errorf("%s: no response: %v", tt.name, err)
			continue
		}
		var resp struct {
			ReturnValue json.RawMessage `json:"return_value"`
			Code        string          `json:"code"`
		}
		json.Unmarshal([]byte(kv[1]), &resp)
		got := resp.Code
		if resp.ReturnValue != nil {
			got = "ok"
		}
		if got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, kv[1], tt.want)
		}
	}
	// Still serving, and every key written is inside the namespace. A Go
	// deadline later than the protocol carries (year 292,277,026,596) goes
	// as the latest it carries.
	c := redisrpc.NewClient(rc, q)
	defer c.Close()
	cctx, cancel := context.WithDeadline(ctx, time.Unix(1<<62, 0))
	defer cancel()
	if got, err := redisrpc.Call(cctx, c, Slow, 2); err != nil || got != 2 {
		t.Fatalf("a call after the bad input, with a deadline in year 292e9: got %d, %v; want 2, nil", got, err)
	}
	// The server's own keys (its lease) start with the queue's tag.
	for _, k := range scan(t, q) {
		if !strings.HasPrefix(k, q+":rpc:") && !strings.HasPrefix(k, keys.Tag(q)+":") {
			t.Errorf("key %s written outside %s:rpc: and the server's own keys", k, q)
		}
	}
	if n, _ := rc.Do(ctx, rc.B().Exists().Key("other:rpc:x").Build()).AsInt64(); n != 0 {
		t.Error("other:rpc:x was written")
	}
}
