package stats

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestBuckets: buckets are ordered, each duration lies in its own, and each
// is at most a quarter of its low end wide.
func TestBuckets(t *testing.T) {
	for i := 1; i <= buckets; i++ {
		if low(i) <= low(i-1) {
			t.Fatalf("bucket %d starts at %v, not after bucket %d at %v", i, low(i), i-1, low(i-1))
		}
	}
	if i := bucket(math.MaxInt64); i != buckets-1 {
		t.Errorf("the longest duration is in bucket %d, want the last, %d", i, buckets-1)
	}
	r := rand.New(rand.NewPCG(1, 1))
	for range 100000 {
		d := time.Duration(r.Int64N(int64(time.Hour)))
		i := bucket(d)
		if d < low(i) || d >= low(i+1) {
			t.Fatalf("%v in bucket %d, which holds [%v, %v)", d, i, low(i), low(i+1))
		}
		if d > 8 && float64(low(i+1)-low(i)) > float64(low(i))/4+1 {
			t.Fatalf("bucket %d, [%v, %v), is too wide", i, low(i), low(i+1))
		}
	}
}

// TestQuantile: quantiles of a known sample are within a fifth of the exact
// ones, and of a window since an earlier snapshot only count the window.
func TestQuantile(t *testing.T) {
	var h Histogram
	var sample []time.Duration
	r := rand.New(rand.NewPCG(2, 2))
	for range 10000 {
		d := time.Duration(r.ExpFloat64() * float64(time.Millisecond))
		sample = append(sample, d)
		h.Observe(d)
	}
	slices.Sort(sample)
	s := h.Snapshot()
	for _, q := range []float64{0.5, 0.9, 0.99} {
		exact := sample[int(q*float64(len(sample)-1))]
		got := s.Quantile(q)
		if diff := float64(got-exact) / float64(exact); diff > 0.2 || diff < -0.2 {
			t.Errorf("quantile %v: got %v, exact %v", q, got, exact)
		}
	}
	for range 100 {
		h.Observe(time.Second)
	}
	w := h.Snapshot().Since(s)
	if w.Count() != 100 || w.Quantile(0.5) < 900*time.Millisecond || w.Quantile(0.5) > 1100*time.Millisecond {
		t.Errorf("the window since the snapshot: %d durations, median %v; want 100 around 1s", w.Count(), w.Quantile(0.5))
	}
	var empty Snapshot
	if empty.Quantile(0.5) != 0 {
		t.Error("the median of nothing is not 0")
	}
}

// TestSparse: a snapshot survives the registry's sparse form.
func TestSparse(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{0, 3, 5 * time.Microsecond, time.Millisecond, time.Millisecond, time.Hour} {
		h.Observe(d)
	}
	s := h.Snapshot()
	if back := FromSparse(s.Sparse()); *back != *s {
		t.Errorf("FromSparse(Sparse()) differs: %v", s.Sparse())
	}
	if len(s.Sparse()) != 5 {
		t.Errorf("Sparse() has %d buckets, want 5: %v", len(s.Sparse()), s.Sparse())
	}
}
