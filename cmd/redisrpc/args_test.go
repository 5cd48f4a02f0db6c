package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestBadArgBeforeConnect: an ARG that starts with { or [ and is not
// JSON, or -kwargs that is not an object, is a usage error (exit 2), but
// call connects to Redis first: with Redis unreachable it exits 1 with
// "cannot reach Redis" and never says the argument is wrong.
func TestBadArgBeforeConnect(t *testing.T) {
	for _, args := range [][]string{
		{"call", "-url", "redis://127.0.0.1:1", "q", "f", "{bad"},
		{"call", "-url", "redis://127.0.0.1:1", "q", "f", "-kwargs", "[1"},
		{"bench", "-url", "redis://127.0.0.1:1", "q", "f", "[1,"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, &stdout, &stderr)
		if code != 2 {
			t.Errorf("redisrpc %s: got %d, %q; want 2 (the argument is not JSON)", strings.Join(args, " "), code, stderr.String())
		}
	}
}

// TestNegativeNumberArg: -1e999 is a JSON number (json.Valid), and a
// negative one, but isNumber asks whether it fits a float64: it is taken
// for a flag, "flag provided but not defined".
func TestNegativeNumberArg(t *testing.T) {
	var stdout, stderr bytes.Buffer
	run(context.Background(), []string{"call", "-url", "redis://127.0.0.1:1", "q", "f", "-1e999"}, &stdout, &stderr)
	if strings.Contains(stderr.String(), "flag provided but not defined") {
		t.Errorf("-1e999 was taken for a flag: %q", stderr.String())
	}
}
