package keys

// ShardCounts is the sorted set of the shard counts queue's servers have
// served it with (WithShards), each scored by the last beat that recorded it
// (Unix ms, a server's clock). Tools read it to find every list of a queue,
// and what waits or lies dead there, while no server is live. It has no
// expiry, as dead letters have none.
func ShardCounts(queue string) string { return Tag(queue) + ":shards" }
