package inspect

import (
	"time"

	"github.com/redisrpc/redisrpc/internal/stats"
)

// Rates turns the counts a queue's servers publish at their beats (every
// third of their heartbeat: 3.3 s by default) into rates. A reader that
// refreshes more often than the servers beat sees the same counts again
// between beats, so a rate taken over its own refresh would read 0, then a
// burst; Rates takes each server's over the interval between its last two
// beats, by that server's clock, keeps it until the server's next beat, and
// sums the servers'. A server adds to the rates from the second of its beats
// that Rates sees; one no longer live leaves them.
//
// The zero value is ready to use. A Rates follows one queue, and is not
// safe for concurrent use.
type Rates struct {
	servers map[string]*beats // by server id
}

// beats is what Rates keeps of one server.
type beats struct {
	at     time.Time                // its last beat seen (Server.Updated)
	stats  map[string]FunctionStats // its counts at that beat
	window map[string]FunctionStats // the counts between its last two beats
	span   time.Duration            // between them
}

// Rate is the calls of a function, or of several, per second, between two
// beats of each server, and the percentiles of their handling times.
type Rate struct {
	Calls         float64            // per second
	Errors        float64            // failed calls per second
	ByCode        map[string]float64 // failed calls per second by code; "" for those without
	P50, P90, P99 time.Duration
	hist          *stats.Snapshot
}

// Known reports whether r holds the rate of at least one server: false
// until Rates has seen two beats of one.
func (r Rate) Known() bool { return r.hist != nil }

// add adds a server's counts over span.
func (r *Rate) add(w FunctionStats, span time.Duration) {
	if r.hist == nil {
		r.hist, r.ByCode = new(stats.Snapshot), map[string]float64{}
	}
	s := span.Seconds()
	r.Calls += float64(w.Calls) / s
	for code, n := range w.Errors {
		r.Errors += float64(n) / s
		r.ByCode[code] += float64(n) / s
	}
	if w.hist != nil {
		for i := range w.hist {
			r.hist[i] += w.hist[i]
		}
	}
	r.P50, r.P90, r.P99 = r.hist.Quantile(0.5), r.hist.Quantile(0.9), r.hist.Quantile(0.99)
}

// Update takes q, the newest reading of the queue, and returns the rates of
// its functions by name (calls of functions the servers do not serve under
// ""), and of all of them. A function's Rate is not Known until a server's
// two beats are.
func (r *Rates) Update(q *Queue) (byFunction map[string]Rate, total Rate) {
	if r.servers == nil {
		r.servers = map[string]*beats{}
	}
	byFunction = map[string]Rate{}
	live := map[string]bool{}
	for _, srv := range q.Servers {
		live[srv.ID] = true
		if srv.Updated.IsZero() {
			continue
		}
		b := r.servers[srv.ID]
		switch {
		case b == nil:
			r.servers[srv.ID] = &beats{at: srv.Updated, stats: srv.Stats}
			continue
		case srv.Updated.After(b.at):
			b.window = make(map[string]FunctionStats, len(srv.Stats))
			for name, st := range srv.Stats {
				b.window[name] = st.Since(b.stats[name])
			}
			b.span, b.at, b.stats = srv.Updated.Sub(b.at), srv.Updated, srv.Stats
		}
		if b.window == nil {
			continue
		}
		for name, w := range b.window {
			f := byFunction[name]
			f.add(w, b.span)
			byFunction[name] = f
			total.add(w, b.span)
		}
	}
	for id := range r.servers {
		if !live[id] {
			delete(r.servers, id)
		}
	}
	return byFunction, total
}
