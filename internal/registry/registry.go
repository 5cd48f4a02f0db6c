// Package registry is where the servers of a queue say what they are and
// what they have done, and where clients and tools read it. Each server
// publishes an Info, as JSON, under keys.Server with the TTL of its lease,
// renewed at each beat; keys.Services indexes the queues; the lease set
// (keys.Leases) says which servers are live.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/internal/keys"
)

// Info is what a server publishes about itself. Its JSON is part of the
// protocol (docs/protocol.md).
type Info struct {
	ID          string `json:"id"`
	Queue       string `json:"queue"`
	Host        string `json:"host"`
	PID         int    `json:"pid"`
	Started     int64  `json:"started"` // Unix ms
	Version     string `json:"version"` // of the library
	Mode        string `json:"mode"`    // "at-most-once" or "at-least-once"
	Concurrency int    `json:"concurrency"`
	Shards      int    `json:"shards"`
	MaxMessage  int    `json:"max_message"`
	HeartbeatMS int64  `json:"heartbeat_ms"`
	// DedupeMS is how long the server keeps each answer to find the
	// requests sent again (WithDedupe); 0 where it keeps none.
	DedupeMS  int64      `json:"dedupe_ms,omitempty"`
	Functions []Function `json:"functions"`
	Stats     Stats      `json:"stats"`
	Updated   int64      `json:"updated"` // Unix ms of this beat
}

// Function is a function a server serves, with its Go types and their JSON
// Schemas (draft 2020-12), which older servers do not publish.
type Function struct {
	Name           string          `json:"name"`
	Request        string          `json:"request"`
	Response       string          `json:"response"`
	RequestSchema  json.RawMessage `json:"request_schema,omitempty"`
	ResponseSchema json.RawMessage `json:"response_schema,omitempty"`
	// Stream marks a stream endpoint, whose response is its items' type.
	Stream bool `json:"stream,omitempty"`
}

// Stats are a server's counts since it started.
type Stats struct {
	InFlight  int64                    `json:"in_flight"`
	Pops      int64                    `json:"pops"`
	Taken     int64                    `json:"taken"`
	Functions map[string]FunctionStats `json:"functions"`
}

// FunctionStats counts the calls of one function since the server started.
// Hist holds the handling times: the count of calls in each bucket, keyed by
// the bucket's low end in nanoseconds, so that readers can take quantiles of
// any window from two beats.
type FunctionStats struct {
	Calls  uint64            `json:"calls"`
	Errors map[string]uint64 `json:"errors,omitempty"`
	P50US  int64             `json:"p50_us"`
	P90US  int64             `json:"p90_us"`
	P99US  int64             `json:"p99_us"`
	Hist   map[string]uint64 `json:"hist,omitempty"`
}

// servicesKeep is how long a queue stays in the index after its last beat.
const servicesKeep = 24 * time.Hour

// Publish writes info for its lease's length, and indexes its queue.
func Publish(ctx context.Context, rc rueidis.Client, info *Info, lease time.Duration) error {
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, r := range rc.DoMulti(ctx,
		rc.B().Set().Key(keys.Server(info.Queue, info.ID)).Value(string(b)).Px(lease).Build(),
		rc.B().Zadd().Key(keys.Services).ScoreMember().ScoreMember(float64(now.UnixMilli()), info.Queue).Build(),
		rc.B().Zremrangebyscore().Key(keys.Services).Min("-inf").Max("("+strconv.FormatInt(now.Add(-servicesKeep).UnixMilli(), 10)).Build(),
	) {
		if err := r.Error(); err != nil {
			return err
		}
	}
	return nil
}

// Withdraw removes the info of the server id of queue, for a server that stops.
func Withdraw(ctx context.Context, rc rueidis.Client, queue, id string) error {
	return rc.Do(ctx, rc.B().Del().Key(keys.Server(queue, id)).Build()).Error()
}

// liveScript returns Redis' time in ms and the ids of the servers of a list
// whose leases run, with when each runs out.
//
//	KEYS[1] the list's lease set
var liveScript = rueidis.NewLuaScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {now, redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')}`)

// LiveIDs returns the ids of queue's live servers: those whose lease runs.
func LiveIDs(ctx context.Context, rc rueidis.Client, queue string) ([]string, error) {
	vs, err := liveScript.Exec(ctx, rc, []string{keys.Leases(queue)}, nil).ToArray()
	if err != nil {
		return nil, err
	}
	if len(vs) != 2 {
		return nil, errors.New("registry: unexpected reply of the live servers' script")
	}
	return vs[1].AsStrSlice()
}

// Live returns the infos of queue's live servers. A live server whose info
// is missing (it has just started, or cannot write it) has an Info with its
// ID alone.
func Live(ctx context.Context, rc rueidis.Client, queue string) ([]Info, error) {
	ids, err := LiveIDs(ctx, rc, queue)
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = keys.Server(queue, id)
	}
	raw, err := rc.Do(ctx, rc.B().Mget().Key(names...).Build()).ToArray()
	if err != nil {
		return nil, err
	}
	infos := make([]Info, len(ids))
	for i, id := range ids {
		infos[i].ID = id
		if i < len(raw) {
			if s, err := raw[i].ToString(); err == nil {
				json.Unmarshal([]byte(s), &infos[i])
			}
		}
	}
	return infos, nil
}
