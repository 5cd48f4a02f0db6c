package main

import (
	"testing"

	"github.com/redisrpc/redisrpc/redisrpctest"
)

// TestGoccy: the codec of the redisrpc-goccy system does what encoding/json
// does, as far as redisrpctest.CheckCodec looks.
func TestGoccy(t *testing.T) {
	redisrpctest.CheckCodec(t, goccy{})
}
