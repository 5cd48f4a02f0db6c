// Package stats counts what a server does: calls and failures by function,
// and handling times in a histogram cheap enough for every call.
package stats

import (
	"math"
	"math/bits"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Buckets of a Histogram: one for each of 0 to 3 ns, then four for each
// power of two of nanoseconds up to 2^63, so a quantile is off by at most a
// fifth.
const buckets = 4 + 61*4

// Histogram counts durations. It is safe for concurrent use.
type Histogram struct {
	counts [buckets]atomic.Uint64
}

// bucket returns the index of d's bucket.
func bucket(d time.Duration) int {
	ns := uint64(max(d, 0))
	if ns < 4 {
		return int(ns)
	}
	n := bits.Len64(ns)               // ns is in [2^(n-1), 2^n), n >= 3
	return (n-2)*4 + int(ns>>(n-3)&3) // the two bits after the leading one
}

// low returns the least duration of bucket i, and of i == buckets the
// longest duration there is.
func low(i int) time.Duration {
	switch {
	case i < 4:
		return time.Duration(i)
	case i >= buckets:
		return math.MaxInt64
	}
	n, sub := i/4+2, i%4
	return time.Duration(uint64(4+sub) << (n - 3))
}

// Observe counts d.
func (h *Histogram) Observe(d time.Duration) { h.counts[bucket(d)].Add(1) }

// Snapshot is the counts of a Histogram at one time.
type Snapshot [buckets]uint64

// Snapshot returns h's counts now.
func (h *Histogram) Snapshot() *Snapshot {
	var s Snapshot
	for i := range s {
		s[i] = h.counts[i].Load()
	}
	return &s
}

// Since returns the counts of s that came after prev; a nil prev is empty.
func (s *Snapshot) Since(prev *Snapshot) *Snapshot {
	d := *s
	if prev != nil {
		for i := range d {
			d[i] -= prev[i]
		}
	}
	return &d
}

// Sparse returns the buckets of s that hold durations, keyed by their low
// ends in nanoseconds, as the registry publishes them.
func (s *Snapshot) Sparse() map[string]uint64 {
	m := make(map[string]uint64)
	for i, c := range s {
		if c > 0 {
			m[strconv.FormatInt(int64(low(i)), 10)] = c
		}
	}
	return m
}

// FromSparse returns the Snapshot that Sparse gave m, ignoring keys that are
// not the low end of a bucket.
func FromSparse(m map[string]uint64) *Snapshot {
	var s Snapshot
	for k, c := range m {
		if ns, err := strconv.ParseInt(k, 10, 64); err == nil {
			if i := bucket(time.Duration(ns)); low(i) == time.Duration(ns) {
				s[i] += c
			}
		}
	}
	return &s
}

// Count returns how many durations s holds.
func (s *Snapshot) Count() uint64 {
	var n uint64
	for _, c := range s {
		n += c
	}
	return n
}

// Quantile returns the duration under which a fraction q of s's durations
// lie, as the middle of its bucket; 0 for an empty s.
func (s *Snapshot) Quantile(q float64) time.Duration {
	total := s.Count()
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total-1)) + 1
	var seen uint64
	for i, c := range s {
		if seen += c; seen >= rank {
			lo := low(i)
			hi := low(i + 1)
			return lo + (hi-lo)/2
		}
	}
	return low(buckets - 1)
}

// Function counts the calls of one function.
type Function struct {
	Calls   atomic.Uint64
	Latency Histogram

	mu     sync.Mutex
	errors map[string]uint64 // by code; "" for failures without one
}

// Done counts a call that took d and failed with code, if failed.
func (f *Function) Done(d time.Duration, failed bool, code string) {
	f.Calls.Add(1)
	f.Latency.Observe(d)
	if failed {
		f.mu.Lock()
		if f.errors == nil {
			f.errors = make(map[string]uint64)
		}
		f.errors[code]++
		f.mu.Unlock()
	}
}

// Errors returns the failures by code.
func (f *Function) Errors() map[string]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := make(map[string]uint64, len(f.errors))
	for k, v := range f.errors {
		m[k] = v
	}
	return m
}
