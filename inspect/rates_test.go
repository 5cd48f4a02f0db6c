package inspect_test

import (
	"math"
	"testing"
	"time"

	"github.com/redisrpc/redisrpc/inspect"
)

// TestRates: read twice a second, servers that beat every 3.3 s at steady
// rates give those rates at every reading from their second beat on, not 0
// between beats; the sum is over the live servers; a server that left no
// longer counts.
func TestRates(t *testing.T) {
	t.Parallel()
	start := time.UnixMilli(1764050000000)
	type server struct {
		id             string
		perSecond      float64 // calls
		failPerSecond  float64 // failed calls, with code "boom"
		offset, period time.Duration
	}
	servers := []server{
		{"a", 1000, 10, 0, 3300 * time.Millisecond},
		{"b", 500, 0, 1700 * time.Millisecond, 3300 * time.Millisecond},
	}
	// reading returns what Inspect says at now: each server's counts as of
	// its last beat.
	reading := func(now time.Time, live []server) *inspect.Queue {
		q := &inspect.Queue{}
		for _, s := range live {
			beat := start.Add(s.offset)
			if now.Before(beat) {
				continue
			}
			beat = beat.Add(now.Sub(beat) / s.period * s.period)
			up := beat.Sub(start).Seconds()
			q.Servers = append(q.Servers, inspect.Server{ID: s.id, Updated: beat, Stats: map[string]inspect.FunctionStats{
				"add": {Calls: uint64(s.perSecond * up), Errors: map[string]uint64{"boom": uint64(s.failPerSecond * up)}},
			}})
		}
		return q
	}
	var r inspect.Rates
	for now := start; now.Before(start.Add(20 * time.Second)); now = now.Add(500 * time.Millisecond) {
		live := servers
		if now.After(start.Add(15 * time.Second)) {
			live = servers[:1] // b stopped
		}
		byFunction, total := r.Update(reading(now, live))
		var want, wantErrors float64
		known := false
		for _, s := range live {
			if now.Sub(start.Add(s.offset)) >= s.period { // two beats seen
				want, wantErrors, known = want+s.perSecond, wantErrors+s.failPerSecond, true
			}
		}
		at := now.Sub(start)
		if total.Known() != known {
			t.Fatalf("at %v: got Known %v, want %v", at, total.Known(), known)
		}
		if math.Abs(total.Calls-want) > 1 || math.Abs(total.Errors-wantErrors) > 1 || math.Abs(total.ByCode["boom"]-wantErrors) > 1 {
			t.Errorf("at %v: got %.1f calls/s, %.1f errors/s (%v), want %.0f, %.0f", at, total.Calls, total.Errors, total.ByCode, want, wantErrors)
		}
		if f := byFunction["add"]; f.Calls != total.Calls {
			t.Errorf("at %v: add's rate %.1f, want the total's, %.1f", at, f.Calls, total.Calls)
		}
	}
}
