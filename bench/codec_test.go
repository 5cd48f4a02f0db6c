package main

import (
	"strings"
	"testing"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

// TestGoccy: the codec of the redisrpc-goccy system does what encoding/json
// does, as far as redisrpctest.CheckCodec looks.
func TestGoccy(t *testing.T) {
	redisrpctest.CheckCodec(t, goccy{})
}

// An order: a struct with nested slices and maps.
type (
	item struct {
		SKU   string            `json:"sku"`
		Qty   int               `json:"qty"`
		Price float64           `json:"price"`
		Tags  []string          `json:"tags,omitempty"`
		Attrs map[string]string `json:"attrs,omitempty"`
	}
	order struct {
		ID       string             `json:"id"`
		Customer string             `json:"customer"`
		Items    []item             `json:"items"`
		Totals   map[string]float64 `json:"totals"`
		Note     string             `json:"note,omitempty"`
		Paid     bool               `json:"paid"`
	}
)

// BenchmarkCodec decodes a request and encodes it again, as a handler's
// server does, with encoding/json, with goccy, and with redisrpc's default
// (goccy's encoder, encoding/json's decoder): the harness's payloads of
// 64 B, 1 KiB and 64 KiB, and an order of 8 items.
//
//	cd bench && go test -run '^$' -bench Codec
func BenchmarkCodec(b *testing.B) {
	o := order{ID: "o-123456", Customer: "c-42", Paid: true, Totals: map[string]float64{"net": 120.5, "tax": 24.1, "gross": 144.6}}
	for i := range 8 {
		o.Items = append(o.Items, item{SKU: "sku-" + strings.Repeat("x", i), Qty: i + 1, Price: 9.99 * float64(i+1),
			Tags: []string{"a", "bb", "ccc"}, Attrs: map[string]string{"color": "red", "size": "L"}})
	}
	newPayload := func() any { return new(payload) }
	values := []struct {
		name  string
		value any
		zero  func() any // what a request decodes into
	}{
		{"payload=64B", payload{ID: 7, Data: strings.Repeat("x", 44)}, newPayload},
		{"payload=1KiB", payload{ID: 7, Data: strings.Repeat("x", 1004)}, newPayload},
		{"payload=64KiB", payload{ID: 7, Data: strings.Repeat("x", 65516)}, newPayload},
		{"order", o, func() any { return new(order) }},
	}
	codecs := []struct {
		name  string
		codec redisrpc.Codec
	}{{"encoding-json", redisrpc.StdJSON}, {"goccy", goccy{}}, {"default", redisrpc.DefaultCodec}}
	for _, v := range values {
		for _, c := range codecs {
			b.Run(v.name+"/codec="+c.name, func(b *testing.B) {
				data, err := c.codec.Marshal(v.value)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				for b.Loop() {
					out := v.zero()
					if err := c.codec.Unmarshal(data, out); err != nil {
						b.Fatal(err)
					}
					if _, err := c.codec.Marshal(out); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
