package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redisrpc/redisrpc/inspect"
	"github.com/redisrpc/redisrpc/internal/schema"
)

func cmdLs(ctx context.Context, e *env, args []string) error {
	if _, err := e.parse(e.flags(), args, 0, ""); err != nil {
		return err
	}
	rc, err := e.connect()
	if err != nil {
		return err
	}
	services, err := inspect.Services(ctx, rc)
	if err != nil {
		return fmt.Errorf("reading the registry: %w", err)
	}
	if len(services) == 0 {
		fmt.Fprintln(e.stderr, "no services: no server has run in the last day")
		return nil
	}
	w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "QUEUE\tSERVERS\tDEPTH\tLAST BEAT\tFUNCTIONS")
	for _, s := range services {
		functions := strings.Join(s.Functions, " ")
		if s.Err != nil {
			functions = "cannot be read: " + s.Err.Error()
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%s ago\t%s\n", s.Queue, s.Servers, s.Depth, round(time.Since(s.LastBeat)), functions)
	}
	return w.Flush()
}

func cmdInfo(ctx context.Context, e *env, args []string) error {
	rest, err := e.parse(e.flags(), args, 1, "QUEUE")
	if err != nil {
		return err
	}
	rc, err := e.connect()
	if err != nil {
		return err
	}
	q, err := inspect.Inspect(ctx, rc, rest[0])
	if err != nil {
		return fmt.Errorf("reading the registry: %w", err)
	}
	fmt.Fprintf(e.stdout, "queue %s: %d live servers, %d waiting", q.Name, len(q.Servers), q.Depth)
	if q.Oldest > 0 {
		fmt.Fprintf(e.stdout, ", the oldest for %s", round(q.Oldest))
	}
	fmt.Fprintln(e.stdout)
	if len(q.Servers) == 0 {
		fmt.Fprintln(e.stdout, "no live server: requests wait in the queue until one starts")
	} else {
		fmt.Fprintln(e.stdout)
		w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "SERVER\tHOST\tPID\tUP\tVERSION\tMODE\tCONCURRENCY\tSHARDS\tMAX MESSAGE\tIN FLIGHT")
		for _, s := range q.Servers {
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n", s.ID, s.Host, s.PID, round(time.Since(s.Started)), s.Version, s.Mode,
				s.Concurrency, s.Shards, s.MaxMessage, s.InFlight)
		}
		w.Flush()
		fmt.Fprintln(e.stdout)
		w = tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "FUNCTION\t\tGO TYPE\tMEMBERS")
		for _, f := range q.Functions {
			fmt.Fprintf(w, "%s\trequest\t%s\t%s\n", f.Name, f.Request, members(f.RequestSchema))
			if f.Stream {
				fmt.Fprintf(w, "\tstream of\t%s\t%s\n", f.Response, members(f.ResponseSchema))
			} else {
				fmt.Fprintf(w, "\tresponse\t%s\t%s\n", f.Response, members(f.ResponseSchema))
			}
		}
		w.Flush()
	}
	if len(q.Processing) > 0 {
		fmt.Fprintln(e.stdout)
		w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "PROCESSING LIST OF\tLIST\tREQUESTS\tSERVER")
		for _, p := range q.Processing {
			state := "gone: given back when another server beats"
			if p.Live {
				state = "live"
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", p.Server, p.List, p.Requests, state)
		}
		w.Flush()
	}
	return nil
}

func cmdStats(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	watch := fs.Bool("watch", false, "refresh in place, showing rates and percentiles between the servers' beats, until interrupted")
	interval := fs.Duration("interval", time.Second, "how often -watch refreshes")
	rest, err := e.parse(fs, args, 1, "QUEUE")
	if err != nil {
		return err
	}
	rc, err := e.connect()
	if err != nil {
		return err
	}
	var rates inspect.Rates
	for {
		q, err := inspect.Inspect(ctx, rc, rest[0])
		if err != nil {
			return fmt.Errorf("reading the registry: %w", err)
		}
		if !*watch {
			printStats(e.stdout, q, nil)
			return nil
		}
		byFunction, _ := rates.Update(q)
		fmt.Fprint(e.stdout, "\033[H\033[2J") // to the top, and clear
		printStats(e.stdout, q, byFunction)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*interval):
		}
	}
}

// printStats prints q's counts by function since the servers started, or,
// with rates from inspect.Rates, the rates and percentiles between the
// servers' last two beats: the counts change only at a beat.
func printStats(out io.Writer, q *inspect.Queue, rates map[string]inspect.Rate) {
	var inFlight int64
	for _, s := range q.Servers {
		inFlight += s.InFlight
	}
	fmt.Fprintf(out, "queue %s: %d live servers, %d in flight, %d waiting", q.Name, len(q.Servers), inFlight, q.Depth)
	if len(q.Servers) > 0 {
		fmt.Fprint(out, " (counts as of the servers' last beat)")
	}
	if q.Oldest > 0 {
		fmt.Fprintf(out, ", the oldest for %s", round(q.Oldest))
	}
	fmt.Fprintln(out)
	if rates != nil && len(rates) == 0 {
		// No server's two beats seen yet: the counts since they started.
		var beat time.Duration
		for _, s := range q.Servers {
			beat = max(beat, s.Heartbeat/3)
		}
		if beat > 0 {
			fmt.Fprintf(out, "rates from the servers' second beat on (they beat every %s)\n", round(beat))
		}
		rates = nil
	}
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	if rates == nil {
		fmt.Fprintln(w, "FUNCTION\tCALLS\tERRORS\tP50\tP90\tP99\tBY CODE")
	} else {
		fmt.Fprintln(w, "FUNCTION\tCALLS/S\tERRORS/S\tP50\tP90\tP99\tBY CODE /S (between each server's last two beats)")
	}
	for _, name := range slices.Sorted(maps.Keys(q.Stats)) {
		label := name
		if label == "" {
			label = "(unknown functions)"
		}
		if rates != nil {
			r, ok := rates[name]
			if !ok {
				fmt.Fprintf(w, "%s\t-\t-\t-\t-\t-\t\n", label)
				continue
			}
			var codes []string
			for _, code := range slices.Sorted(maps.Keys(r.ByCode)) {
				if r.ByCode[code] > 0 {
					codes = append(codes, fmt.Sprintf("%s %.1f", codeName(code), r.ByCode[code]))
				}
			}
			fmt.Fprintf(w, "%s\t%.1f\t%.1f\t%s\t%s\t%s\t%s\n", label, r.Calls, r.Errors, round(r.P50), round(r.P90), round(r.P99), strings.Join(codes, ", "))
			continue
		}
		st := q.Stats[name]
		var errs uint64
		var codes []string
		for _, code := range slices.Sorted(maps.Keys(st.Errors)) {
			errs += st.Errors[code]
			codes = append(codes, fmt.Sprintf("%s %d", codeName(code), st.Errors[code]))
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%s\t%s\t%s\t%s\n", label, st.Calls, errs, round(st.P50), round(st.P90), round(st.P99), strings.Join(codes, ", "))
	}
	w.Flush()
}

// members describes the JSON a schema allows, briefly: {item: string,
// qty?: integer}, ? marking members that may be left out.
func members(raw json.RawMessage) string {
	if raw == nil {
		return "(not published: an older server)"
	}
	s, err := schema.Parse(raw)
	if err != nil {
		return "(a schema that does not parse)"
	}
	return schema.Describe(s)
}

// codeName is how a list shows an error code.
func codeName(code string) string {
	if code == "" {
		return "no code"
	}
	return code
}

// round shortens d for a person.
func round(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Microsecond:
		return d.String()
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
