package main

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/redisrpc/redisrpc/inspect"
)

func cmdDead(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	requeue := fs.String("requeue", "", `put dead letters back in the queue: "all", or the number of one, from the list`)
	purge := fs.Bool("purge", false, "delete the queue's dead letters")
	rest, err := e.parse(fs, args, 1, "QUEUE")
	if err != nil {
		return err
	}
	if *requeue != "" && *purge {
		return usagef("give -requeue or -purge, not both")
	}
	rc, err := e.connect()
	if err != nil {
		return err
	}
	queue := rest[0]
	if *purge {
		n, err := inspect.Purge(ctx, rc, queue)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "purged %d dead letters of %s\n", n, queue)
		return nil
	}
	dead, err := inspect.DeadLetters(ctx, rc, queue)
	if err != nil {
		return fmt.Errorf("reading the dead letters: %w", err)
	}
	if *requeue != "" {
		pick := dead
		if *requeue != "all" {
			i, err := strconv.Atoi(*requeue)
			if err != nil || i < 0 || i >= len(dead) {
				return usagef("-requeue %q: want all, or a number from 0 to %d (redisrpc dead %s lists them)", *requeue, len(dead)-1, queue)
			}
			pick = dead[i : i+1]
		}
		done := 0
		for _, d := range pick {
			if err := inspect.Requeue(ctx, rc, d); err != nil {
				fmt.Fprintf(e.stderr, "dead letter %s/%d: %v\n", d.List, d.Index, err)
				continue
			}
			done++
		}
		fmt.Fprintf(e.stdout, "requeued %d of %d dead letters of %s\n", done, len(pick), queue)
		if done < len(pick) {
			return errReported
		}
		return nil
	}
	if len(dead) == 0 {
		fmt.Fprintf(e.stdout, "no dead letters in %s\n", queue)
		return nil
	}
	w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "#\tAT\tDELIVERIES\tFUNCTION\tID\tLAST SERVER\tREQUEST")
	for i, d := range dead {
		fmt.Fprintf(w, "%d\t%s\t%d\t%s\t%s\t%s\t%s\n", i, d.At.Format(time.DateTime), d.Deliveries, d.Function, d.ID, d.Server, clip(d.Request, 80))
	}
	w.Flush()
	fmt.Fprintf(e.stdout, "\nwhy: %s\nredisrpc dead -requeue all %s puts them back; -purge deletes them\n", dead[0].Why, queue)
	return nil
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
