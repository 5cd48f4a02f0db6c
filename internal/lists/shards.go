package lists

import (
	"strconv"
	"strings"
)

// Slots is the number of hash slots of Redis Cluster.
const Slots = 16384

// Slot returns the hash slot of key, as Redis Cluster computes it: CRC16
// (XMODEM) of the key, or of its hash tag, the text between the first { and
// the next } when that is not empty.
func Slot(key string) int {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if end := strings.IndexByte(key[open+1:], '}'); end > 0 {
			key = key[open+1 : open+1+end]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % Slots
}

// ShardNames returns the request lists of queue spread over n shards: queue
// itself, so that classic clients keep working, and n-1 lists whose hash slots
// lie each in another of n equal parts of the slot space. A cluster whose
// masters own equal ranges of slots, as redis-cli --cluster create makes them,
// then has n shards over n masters on different masters. Client and server
// compute the same names from the same queue and n.
func ShardNames(queue string, n int) []string {
	names := []string{queue}
	taken := map[int]bool{Slot(queue) * n / Slots: true}
	for part := 0; len(names) < n; part++ {
		if taken[part] {
			continue
		}
		for k := 0; ; k++ {
			name := "{" + queue + "#" + strconv.Itoa(len(names)) + "." + strconv.Itoa(k) + "}"
			if Slot(name)*n/Slots == part {
				names = append(names, name)
				break
			}
		}
	}
	return names
}
