package lists

import "testing"

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
}

func TestShardNames(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 8} {
		names := ShardNames("calc", n)
		if len(names) != n || names[0] != "calc" {
			t.Fatalf("ShardNames(calc, %d) = %v, want %d names starting with calc", n, names, n)
		}
		parts := map[int]string{}
		for _, name := range names {
			p := Slot(name) * n / Slots
			if other, dup := parts[p]; dup {
				t.Errorf("n=%d: %s and %s share part %d of the slot space", n, name, other, p)
			}
			parts[p] = name
			if SlotTag(name) != name && name != "calc" {
				t.Errorf("shard %s is not its own hash tag", name)
			}
		}
	}
}
