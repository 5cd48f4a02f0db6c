package contract

import (
	"bytes"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/redisrpc/redisrpc/internal/registry"
	"github.com/redisrpc/redisrpc/internal/schema"
)

type rvReq struct {
	Qty int `json:"qty"`
}
type rvReqA struct {
	Quantity int `json:"quantity"`
}
type rvReqB struct {
	Count int `json:"count"`
}

func rvInfo(id string, req reflect.Type) registry.Info {
	return registry.Info{ID: id, Functions: []registry.Function{{
		Name: "place", RequestSchema: schema.For(req), ResponseSchema: schema.For(reflect.TypeFor[int]()),
	}}}
}

// TestServerOrder: the registry lists live servers by lease expiry
// (ZRANGEBYSCORE), so two servers with different schemas come in either
// order from one reading to the next. Read takes a new order for a change,
// and the Checker, whose text lists the servers in that order, warns again
// at every swap: not once per distinct drift.
func TestServerOrder(t *testing.T) {
	var out bytes.Buffer
	c := &Checker{Logger: slog.New(slog.NewTextHandler(&out, nil)), Queue: "q"}
	a, b := rvInfo("a", reflect.TypeFor[rvReqA]()), rvInfo("b", reflect.TypeFor[rvReqB]())
	var p *Published
	for i := range 6 {
		infos := []registry.Info{a, b}
		if i%2 == 1 {
			infos = []registry.Info{b, a}
		}
		old := p
		p = Read(infos, old)
		if i > 0 && p != old {
			t.Logf("reading %d: the same servers, in another order, read as a change", i)
		}
		c.Check("place", reflect.TypeFor[rvReq](), reflect.TypeFor[int](), One, p)
	}
	if n := strings.Count(out.String(), "level=WARN"); n > 1 {
		t.Errorf("got %d warnings for the same two servers read 6 times; want 1:\n%s", n, out.String())
	}
}

// BenchmarkCheck is the cost a call pays for the contract: the lookup of
// its endpoint and the drift already found.
func BenchmarkCheck(b *testing.B) {
	c := &Checker{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Queue: "q"}
	p := Read([]registry.Info{rvInfo("a", reflect.TypeFor[rvReqA]())}, nil)
	req, resp := reflect.TypeFor[rvReq](), reflect.TypeFor[int]()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Check("place", req, resp, One, p)
		}
	})
}
