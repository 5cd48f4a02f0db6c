package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redisrpc/redisrpc/inspect"
)

func cmdDead(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	requeue := fs.String("requeue", "", `put dead letters back in the queue: "all", or REFs from the list, comma-separated`)
	force := fs.Bool("force", false, "with -requeue: requeue dead letters whose callers were told they failed, too")
	purge := fs.Bool("purge", false, "delete the queue's dead letters")
	rest, err := e.parse(fs, args, 1, "QUEUE")
	if err != nil {
		return err
	}
	if *requeue != "" && *purge {
		return usagef("give -requeue or -purge, not both")
	}
	queue := rest[0]
	var refs []string
	if *requeue != "" && *requeue != "all" {
		for _, ref := range strings.Split(*requeue, ",") {
			if !isRef(ref) {
				return usagef("-requeue %q: want all, or the REF of a dead letter, 12 hex digits (redisrpc dead %s lists them)", *requeue, queue)
			}
			refs = append(refs, ref)
		}
	}
	rc, err := e.connect()
	if err != nil {
		return err
	}
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
		return requeueDead(ctx, e, queue, dead, refs, *force)
	}
	if len(dead) == 0 {
		fmt.Fprintf(e.stdout, "no dead letters in %s\n", queue)
		return nil
	}
	w := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "REF\tAT\tDELIVERIES\tFUNCTION\tID\tCALLER\tLAST SERVER\tREQUEST")
	answered := 0
	for _, d := range dead {
		caller := "-"
		if d.Answered {
			caller, answered = "told it failed", answered+1
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", d.Ref, d.At.Format(time.DateTime), d.Deliveries, d.Function, d.ID, caller, d.Server, clip(d.Request, 80))
	}
	w.Flush()
	fmt.Fprintf(e.stdout, "\nwhy: %s\n", dead[0].Why)
	if answered > 0 {
		fmt.Fprintf(e.stdout, "told it failed: the caller got internal when the request became a dead letter, and may have undone its work;\n"+
			"requeuing runs the request again all the same, so -requeue refuses those without -force\n")
	}
	fmt.Fprintf(e.stdout, "redisrpc dead -requeue REF %s puts one back, -requeue all every one; -purge deletes them\n", queue)
	return nil
}

// requeueDead requeues the dead letters of queue that refs names, or all
// those read, as cmdDead's -requeue says.
func requeueDead(ctx context.Context, e *env, queue string, dead []inspect.DeadLetter, refs []string, force bool) error {
	pick := dead
	if refs != nil {
		pick = nil
		for _, ref := range refs {
			i := -1
			for j, d := range dead {
				if d.Ref == ref {
					i = j
					break
				}
			}
			if i < 0 {
				fmt.Fprintf(e.stderr, "dead letter %s: not among the dead letters of %s: requeued or purged since it was listed? redisrpc dead %s lists them\n", ref, queue, queue)
				continue
			}
			pick = append(pick, dead[i])
		}
	}
	var opts []inspect.RequeueOption
	if force {
		opts = append(opts, inspect.WithAnswered())
	}
	done, refused := 0, 0
	for _, d := range pick {
		err := inspect.Requeue(ctx, e.rc, d, opts...)
		switch {
		case errors.Is(err, inspect.ErrAnswered):
			refused++
			fmt.Fprintf(e.stderr, "dead letter %s (%s, id %s): refused: its caller was told it failed (internal) and may have undone its work; requeuing runs %s again; pass -force to requeue it all the same\n",
				d.Ref, d.Function, d.ID, d.Function)
		case errors.Is(err, inspect.ErrKept):
			refused++
			fmt.Fprintf(e.stderr, "dead letter %s (%s, id %s): refused: the servers kept its answer (WithDedupe), so its caller was answered and it would not run; it can be requeued once the answer expires\n",
				d.Ref, d.Function, d.ID)
		case errors.Is(err, inspect.ErrGone):
			fmt.Fprintf(e.stderr, "dead letter %s: gone: requeued or purged since it was read\n", d.Ref)
		case err != nil:
			fmt.Fprintf(e.stderr, "dead letter %s: %v\n", d.Ref, err)
		default:
			done++
		}
	}
	want := len(pick)
	if refs != nil {
		want = len(refs)
	}
	fmt.Fprintf(e.stdout, "requeued %d of %d dead letters of %s", done, want, queue)
	if refused > 0 {
		fmt.Fprintf(e.stdout, "; refused %d whose callers were told they failed (-force to requeue them)", refused)
	}
	fmt.Fprintln(e.stdout)
	if done < want {
		return errReported
	}
	return nil
}

// isRef reports whether s has the form of a DeadLetter's Ref.
func isRef(s string) bool {
	if len(s) != 12 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
