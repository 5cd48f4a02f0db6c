package web

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc/internal/keys"
	"github.com/redisrpc/redisrpc/internal/localredis"
)

// TestRefreshErrors, on an embedded Redis of its own (so that the index
// holds its queues alone): queues that cannot be read are named in the
// page's error, three at most and a count of the rest, and hide none of
// the others; a refresh whose dashboard stops meanwhile leaves the page as
// it was.
func TestRefreshErrors(t *testing.T) {
	srv, rc, err := localredis.StartWithClient(localredis.Embedded)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	defer rc.Close()
	ctx := context.Background()
	now := float64(time.Now().UnixMilli())
	zadd := rc.B().Zadd().Key(keys.Services).ScoreMember().ScoreMember(now, "good1").ScoreMember(now, "good2")
	var broken []string
	for i := range 4 {
		q := fmt.Sprintf("broken%d", i)
		broken = append(broken, q)
		zadd = zadd.ScoreMember(now, q)
		if err := rc.Do(ctx, rc.B().Set().Key(keys.Leases(q)).Value("not a sorted set").Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rc.Do(ctx, zadd.Build()).Error(); err != nil {
		t.Fatal(err)
	}
	s := New(rc, false, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.refresh(ctx)
	var listed []string
	for _, svc := range s.state.Services {
		listed = append(listed, svc.Queue)
	}
	if !slices.Equal(listed, []string{"good1", "good2"}) {
		t.Errorf("listed %q, want the two good queues", listed)
	}
	named := 0
	for _, q := range broken {
		if strings.Contains(s.state.Error, "queue "+q+" cannot be read: ") {
			named++
		}
	}
	if named != 3 || !strings.HasSuffix(s.state.Error, "; and 1 more") {
		t.Errorf("error %q: want three of the four broken queues named and 1 more counted", s.state.Error)
	}
	before := s.state
	stopped, cancel := context.WithCancel(ctx)
	defer cancel()
	s.rc = stopAfterFirst{rc, cancel, new(sync.Once)} // the index is read; the dashboard stops
	s.refresh(stopped)
	if s.state.Updated != before.Updated || s.state.Error != before.Error || len(s.state.Services) != len(before.Services) {
		t.Errorf("a refresh of a stopping dashboard: state %+v, want it unchanged (%+v)", s.state, before)
	}
}

// stopAfterFirst is a client that calls stop once its first command is
// answered.
type stopAfterFirst struct {
	rueidis.Client
	stop context.CancelFunc
	once *sync.Once
}

func (c stopAfterFirst) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	r := c.Client.Do(ctx, cmd)
	c.once.Do(c.stop)
	return r
}
