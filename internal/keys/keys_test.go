package keys

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestSlot(t *testing.T) {
	// Values from Redis' CLUSTER KEYSLOT and its cluster specification.
	for key, want := range map[string]int{
		"123456789": 0x31C3 % Slots, "foo": 12182, "bar": 5061, "{user1000}.following": 3443,
		"{user1000}.followers": 3443, "foo{}{bar}": Slot("foo{}{bar}"), "{}x": Slot("{}x"),
	} {
		if got := Slot(key); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
	if Slot("foo{}{bar}") == Slot("bar") {
		t.Error("an empty hash tag must not be used")
	}
	if Slot("foo{{bar}}") != Slot("{bar") {
		t.Error("the tag runs from the first { to the first } after it")
	}
}

// oddNames are queue names whose braces trip naive hash-tag handling.
var oddNames = []string{
	"calc", "{calc}", "orders:{eu}", "app:{tenant1}:jobs", "a}b", "calc}", "jobs{}", "}", "{", "{}",
	"}{", "{{x}}", "x{y", "}{x}", "{}{x}", "a{b}c{d}", "a{}b}c", "über}",
}

// TestTag: every key that starts with Tag(name) hashes to name's slot, for
// every name, as multi-key commands on a cluster need.
func TestTag(t *testing.T) {
	names := append([]string(nil), oddNames...)
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		var b strings.Builder
		for range 1 + r.IntN(8) {
			b.WriteByte("ab{}:#"[r.IntN(6)])
		}
		names = append(names, b.String())
	}
	for _, name := range names {
		tag := Tag(name)
		for _, suffix := range []string{"", ":processing:X", "}", "{z}", ":wake:Q"} {
			if Slot(tag+suffix) != Slot(name) {
				t.Fatalf("Slot(Tag(%q)+%q) = Slot(%q) = %d, want Slot(%q) = %d", name, suffix, tag+suffix, Slot(tag+suffix), name, Slot(name))
			}
		}
	}
}

// TestTagDistinct: distinct names have distinct tags, and no key of one
// name (its tag and a suffix) is a key of another: queue X and queue {X},
// or a queue and another's shard, once shared every server key. Every name
// of up to four characters over an alphabet of braces and separators.
func TestTagDistinct(t *testing.T) {
	const alphabet = "a{}:#~."
	names := []string{""}
	for n := 0; n < len(names); n++ {
		if len(names[n]) < 4 {
			for _, c := range alphabet {
				names = append(names, names[n]+string(c))
			}
		}
	}
	names = append(names[1:], oddNames...)
	for _, q := range []string{"X", "calc", "orders:{eu}"} {
		names = append(names, "{"+q+"}", q+"#1.0", "{"+q+"#1.0}")
		names = append(names, Shards(q, 8)...)
	}
	seen := map[string]string{}
	for _, name := range names {
		for _, key := range []string{Leases(name), Processing(name, "S1"), Server(name, "S1"), Inbox(name, "S1"), Dead(name)} {
			if other, ok := seen[key]; ok && other != name {
				t.Fatalf("queues %q and %q share the key %q", other, name, key)
			}
			seen[key] = name
		}
	}
	if Leases("X") == Leases("{X}") {
		t.Errorf("Leases(X) = Leases({X}) = %q", Leases("X"))
	}
	// The keys of queues without braces, which running services use, do not change.
	if got := Leases("calc"); got != "{calc}:leases" {
		t.Errorf("Leases(calc) = %q, want {calc}:leases as before", got)
	}
}

// TestShards: n names, starting with the queue, each in another n-th of the
// slot space, for every name and every n, and the same on every call.
func TestShards(t *testing.T) {
	for _, queue := range oddNames {
		for _, n := range []int{1, 2, 3, 4, 8, 64} {
			names := Shards(queue, n)
			if len(names) != n || names[0] != queue {
				t.Fatalf("Shards(%q, %d) = %q, want %d names starting with the queue", queue, n, names, n)
			}
			parts := map[int]string{}
			seen := map[string]bool{}
			for _, name := range names {
				p := Slot(name) * n / Slots
				if other, dup := parts[p]; dup {
					t.Errorf("Shards(%q, %d): %q and %q share part %d of the slot space", queue, n, name, other, p)
				}
				parts[p] = name
				if seen[name] {
					t.Errorf("Shards(%q, %d): %q twice", queue, n, name)
				}
				seen[name] = true
				if name != queue && hashed(name) == name {
					t.Errorf("Shards(%q, %d): shard %q has no hash tag of its own", queue, n, name)
				}
			}
			if again := Shards(queue, n); strings.Join(again, "\n") != strings.Join(names, "\n") {
				t.Errorf("Shards(%q, %d) differs between calls: %q then %q", queue, n, names, again)
			}
		}
	}
	// Names of earlier releases, which running services use, do not change.
	for queue, want := range map[string]string{"calc": `"calc" "{calc#1.2}" "{calc#2.1}"`, "x{y": `"x{y" "{x{y#1.3}" "{x{y#2.1}" "{x{y#3.3}"`} {
		n := strings.Count(want, " ") + 1
		if got := fmt.Sprintf("%q", Shards(queue, n)); got != "["+want+"]" {
			t.Errorf("Shards(%q, %d) = %s, want [%s] as before", queue, n, got, want)
		}
	}
	if got := Shards("calc", MaxShards+10); len(got) != MaxShards {
		t.Errorf("Shards(calc, MaxShards+10) has %d names, want %d", len(got), MaxShards)
	}
}

// TestReply: a client's response list is in the queue's namespace and,
// where a tag can do it, its slot.
func TestReply(t *testing.T) {
	inSlot := 0
	for _, queue := range oddNames {
		r := Reply(queue, "K3P0")
		if !strings.HasPrefix(r, queue+":rpc:") || !strings.HasSuffix(r, "K3P0") || len(r)-len(queue)-5 > 200 {
			t.Errorf("Reply(%q) = %q, not <queue>:rpc:...K3P0", queue, r)
		}
		if Slot(r) == Slot(queue) {
			inSlot++
		}
	}
	if Reply("calc", "X") != "calc:rpc:{calc}X" || Reply("{calc}", "X") != "{calc}:rpc:X" {
		t.Errorf("Reply: got %q and %q", Reply("calc", "X"), Reply("{calc}", "X"))
	}
	for _, queue := range []string{"calc", "{calc}", "orders:{eu}", "app:{tenant1}:jobs", "a}b", "calc}"} {
		if r := Reply(queue, "K3P0"); Slot(r) != Slot(queue) {
			t.Errorf("Reply(%q) = %q is not in the queue's slot", queue, r)
		}
	}
	t.Logf("%d of %d odd names have their response list in their slot", inSlot, len(oddNames))
}
